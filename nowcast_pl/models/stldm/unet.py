"""STLDM's latent denoising U-Net D_θ (Foo et al., arXiv:2512.21118, Sec. 3.2, Fig. 3).

A video U-Net on the future latents ``(B, T, C, h, w)``; frames are folded into the batch except inside
temporal attention. Every down level concatenates the condition (the Translator's mean latent, brought to the
level's size by a pyramid of strided convs) to its input, then runs ResBlock(t) -> patch-wise linear spatial
attention -> ResBlock -> temporal attention -> downsample; the middle runs ResBlock(t) -> full spatial
attention -> ResBlock(t) -> temporal attention -> ResBlock(t); each up level runs upsample -> temporal
attention -> [temporal skip] ResBlock(t) -> spatial attention -> [spatial skip] ResBlock(t). There is no
output projection: the last ResBlock emits the ``C``-channel prediction (v in STLDM).

``spatial_only=True`` is the paper's "spatial enhancement" ablation (Sec. 4.3.3): no temporal attention
anywhere, frames denoised independently.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from nowcast_pl.layers.unet import EmbeddingMLP, ResnetBlock
from nowcast_pl.models.stldm.attention import TemporalNorm, spatial_block, temporal_block
from nowcast_pl.models.stldm.memory_layout import conv_layout


def _down(c_in: int, c_out: int, last: bool) -> nn.Conv2d:
    """4x4 stride-2 conv (halves H, W), or a size-keeping 3x3 conv at the last level."""
    return nn.Conv2d(c_in, c_out, 3, padding=1) if last else nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)


def _up(c_in: int, c_out: int, first: bool) -> nn.Module:
    """4x4 stride-2 transposed conv (doubles H, W), or a size-keeping 3x3 conv at the first up level."""
    return nn.Conv2d(c_in, c_out, 3, padding=1) if first else nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)


class _Temporal(nn.Module):
    """Temporal attention applied to frames folded into the batch: ``(B*T, C, H, W)`` in and out."""

    def __init__(self, dim: int, norm_over: TemporalNorm, heads: int, dim_head: int, enabled: bool) -> None:
        super().__init__()
        self.block = temporal_block(dim, norm_over=norm_over, heads=heads, dim_head=dim_head) if enabled else None

    def forward(self, x: Tensor, frames: int) -> Tensor:
        if self.block is None:
            return x
        n, c, h, w = x.shape
        return self.block(x.reshape(n // frames, frames, c, h, w)).reshape(n, c, h, w)


class DownLevel(nn.Module):
    """[x, cond] -> ResBlock(t) -> spatial attn (skip 1) -> ResBlock -> temporal attn (skip 2) -> downsample."""

    def __init__(self, dim: int, dim_out: int, *, emb_dim: int, patch: int, last: bool, groups: int,
                 heads: int, dim_head: int, temporal: bool, temporal_norm: TemporalNorm) -> None:
        super().__init__()
        self.block1 = ResnetBlock(2 * dim, dim, emb_dim=emb_dim, groups=groups)
        self.spatial = spatial_block(dim, patch, heads=heads, dim_head=dim_head)
        self.block2 = ResnetBlock(dim, dim, groups=groups)
        self.temporal = _Temporal(dim, temporal_norm, heads, dim_head, temporal)
        self.down = _down(dim, dim_out, last)

    def forward(self, x: Tensor, cond: Tensor, emb: Tensor, frames: int) -> tuple[Tensor, Tensor, Tensor]:
        spatial_skip = self.spatial(self.block1(torch.cat((x, cond), dim=1), emb))
        temporal_skip = self.temporal(self.block2(spatial_skip), frames)
        return self.down(temporal_skip), spatial_skip, temporal_skip


class MidLevel(nn.Module):
    """ResBlock(t) -> full spatial attention -> ResBlock(t) -> temporal attention -> ResBlock(t)."""

    def __init__(self, dim: int, *, emb_dim: int, groups: int, heads: int, dim_head: int, temporal: bool,
                 temporal_norm: TemporalNorm) -> None:
        super().__init__()
        self.block1 = ResnetBlock(dim, dim, emb_dim=emb_dim, groups=groups)
        self.spatial = spatial_block(dim, None, heads=heads, dim_head=dim_head)
        self.block2 = ResnetBlock(dim, dim, emb_dim=emb_dim, groups=groups)
        self.temporal = _Temporal(dim, temporal_norm, heads, dim_head, temporal)
        self.block3 = ResnetBlock(dim, dim, emb_dim=emb_dim, groups=groups)

    def forward(self, x: Tensor, emb: Tensor, frames: int) -> Tensor:
        x = self.block2(self.spatial(self.block1(x, emb)), emb)
        return self.block3(self.temporal(x, frames), emb)


class UpLevel(nn.Module):
    """upsample -> temporal attn -> [skip 2] ResBlock(t) -> spatial attn -> [skip 1] ResBlock(t) -> dim_out."""

    def __init__(self, dim: int, skip: int, dim_out: int, *, emb_dim: int, patch: int, first: bool,
                 groups: int, heads: int, dim_head: int, temporal: bool, temporal_norm: TemporalNorm) -> None:
        super().__init__()
        self.up = _up(dim, dim, first)
        self.temporal = _Temporal(dim, temporal_norm, heads, dim_head, temporal)
        self.block1 = ResnetBlock(dim + skip, dim, emb_dim=emb_dim, groups=groups)
        self.spatial = spatial_block(dim, patch, heads=heads, dim_head=dim_head)
        self.block2 = ResnetBlock(dim + skip, dim_out, emb_dim=emb_dim, groups=groups)

    def forward(self, x: Tensor, spatial_skip: Tensor, temporal_skip: Tensor, emb: Tensor, frames: int) -> Tensor:
        x = self.temporal(conv_layout(self.up(x)), frames)
        x = self.spatial(self.block1(torch.cat((x, temporal_skip), dim=1), emb))
        return self.block2(torch.cat((x, spatial_skip), dim=1), emb)


class STLDMUNet(nn.Module):
    """Latent denoiser ``D_θ(z_t, t, ẑ)`` of STLDM.

    Args:
        channels: latent channels C (32).
        base: width of level 0's output (64); level widths are ``[channels] + [base * m for m in mults]``.
        mults: width multipliers (1, 2, 4, 8); level n works at ``widths[n]`` channels.
        patch_size: window of the linear attention at level 0; level n uses ``patch_size / 2**n``
            (a power of two >= ``2**(len(mults) - 1)``).
        groups, heads, dim_head: GroupNorm groups, attention heads and head width.
        temporal: False for the spatial-only ablation (no temporal attention).
        temporal_norm: pre-norm of temporal attention, ``"time"`` (released code) or ``"channels"``.

    Every level's feature maps are put in the layout its convolutions run fastest in on CPU
    (:func:`~nowcast_pl.models.stldm.memory_layout.conv_layout`; weights stay NCHW).

    Shapes: ``forward(z_t (B, T, C, h, w), t (B,) int64, cond (B, T, C, h, w) | None, keep (B,) | None)``
    -> ``(B, T, C, h, w)``. ``h`` and ``w`` must be divisible by ``patch_size`` (see :meth:`check_latent_size`).
    """

    def __init__(self, channels: int = 32, *, base: int = 64, mults: Sequence[int] = (1, 2, 4, 8),
                 patch_size: int = 16, groups: int = 8, heads: int = 4, dim_head: int = 32, temporal: bool = True,
                 temporal_norm: TemporalNorm = "time") -> None:
        super().__init__()
        levels = len(mults)
        if levels < 1 or patch_size < 2 ** (levels - 1) or patch_size & (patch_size - 1):
            raise ValueError(f"STLDMUNet: patch_size must be a power of two >= 2**(len(mults)-1) = "
                             f"{2 ** (levels - 1)}, got patch_size={patch_size}, mults={list(mults)}")
        widths = [channels] + [base * m for m in mults]
        emb_dim = 4 * base
        common = dict(groups=groups, heads=heads, dim_head=dim_head, temporal=temporal, temporal_norm=temporal_norm)
        self.channels, self.patch_size, self.levels = channels, patch_size, levels
        self.time_mlp = EmbeddingMLP(base, emb_dim)
        self.downs = nn.ModuleList(
            DownLevel(widths[n], widths[n + 1], emb_dim=emb_dim, patch=patch_size >> n, last=n == levels - 1,
                      **common) for n in range(levels))
        # The condition pyramid stops at the last level: the released code's extra conv there is never used.
        self.cond_downs = nn.ModuleList(nn.Conv2d(widths[n], widths[n + 1], 4, stride=2, padding=1)
                                        for n in range(levels - 1))
        self.mid = MidLevel(widths[-1], emb_dim=emb_dim, **common)
        self.ups = nn.ModuleList(
            UpLevel(widths[levels - n], widths[levels - n - 1], widths[levels - n - 1], emb_dim=emb_dim,
                    patch=patch_size >> (levels - n - 1), first=n == 0, **common) for n in range(levels))

    def check_latent_size(self, h: int, w: int) -> None:
        """Raise ValueError unless every level's feature map splits into whole attention windows."""
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"latent size {h}x{w} is not divisible by the U-Net patch_size={self.patch_size}; "
                             f"use frames whose side is a multiple of patch_size x the VAE factor, or a "
                             f"smaller patch_size")

    def condition_pyramid(self, cond: Tensor | None, keep: Tensor | None) -> list[Tensor | None]:
        """The condition at every level, ``(B*T, widths[n], h/2**n, w/2**n)``; zeros where not kept.

        ``cond`` None or ``keep`` all zero gives zeros at every level (the unconditional model of CFG).
        """
        if cond is None or (keep is not None and not bool(keep.any())):
            return [None] * self.levels
        rows = None if keep is None else keep.to(cond.dtype).repeat_interleave(cond.shape[1])[:, None, None, None]
        pyramid = [cond.flatten(0, 1)]
        for conv in self.cond_downs:
            pyramid.append(conv(conv_layout(pyramid[-1])))
        return pyramid if rows is None else [level * rows for level in pyramid]

    def forward(self, z_t: Tensor, t: Tensor, cond: Tensor | None = None, keep: Tensor | None = None) -> Tensor:
        b, frames, c, h, w = z_t.shape
        self.check_latent_size(h, w)
        emb = self.time_mlp(t).repeat_interleave(frames, dim=0)
        x = z_t.flatten(0, 1)
        conds = self.condition_pyramid(cond, keep)
        skips = []
        for level, cond_n in zip(self.downs, conds, strict=True):
            x = conv_layout(x)
            cond_n = torch.zeros_like(x) if cond_n is None else conv_layout(cond_n)
            x, spatial_skip, temporal_skip = level(x, cond_n, emb, frames)
            skips.append((spatial_skip, temporal_skip))
        x = self.mid(conv_layout(x), emb, frames)
        for level in self.ups:
            x = level(x, *skips.pop(), emb, frames)
        return x.reshape(b, frames, c, h, w)
