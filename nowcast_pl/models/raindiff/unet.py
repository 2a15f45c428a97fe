"""The residual-segment denoiser of DiffCast (Yu et al., CVPR 2024, Sec. 3.3) and RainDiff
(arXiv:2510.14962, Sec. 3.2-3.3): a lucidrains-style DDPM U-Net (Ho et al. 2020, App. B) on one segment of
``S`` frames stacked into channels.

Input: ``cat(previous-segment residual, noisy residual)`` (``2 S`` channels) through a 7x7 conv. The
diffusion time and the segment index each get a sinusoidal embedding + MLP; their concatenation drives
every ResNet block's scale and shift. Encoder level ``l``: ResNet block on ``cat(x, h^l)`` (the only place
the context ``h`` enters), ResNet block, TAU temporal attention, optionally a Token-wise Attention stage,
downsample (the last level: a 3x3 conv to the middle width). Middle: ResNet, attention (a Token-wise
Attention stage in RainDiff, full softmax self-attention in DiffCast), ResNet. The decoder mirrors the
encoder with two skip concatenations per level and no context. Head: ``cat(x, stem output)``, a ResNet
block and a 1x1 conv to ``S`` channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast_pl.layers.unet import EmbeddingMLP, ResnetBlock
from nowcast_pl.models.raindiff.context_encoder import level_widths
from nowcast_pl.models.raindiff.resample import NearestUpsample, SpaceToDepthDownsample
from nowcast_pl.models.raindiff.softmax_attention import PreNormSelfAttention
from nowcast_pl.models.raindiff.temporal_attention import PreNormTemporalAttentionUnit
from nowcast_pl.models.raindiff.tokenwise_attention import TokenwiseStage, Variant


class UNetLevel(nn.Module):
    """Two time-conditioned ResNet blocks, TAU, optional Token-wise Attention stage, resolution change.

    Args:
        in_first: input channels of the first block (the level input plus context or skip).
        in_second: input channels of the second block.
        width: working width of the level.
        resample: the module that ends the level (downsample, upsample or a plain 3x3 conv).
        emb_dim: width of the time + segment embedding.
        tokenwise: add a :class:`TokenwiseStage` after TAU.
        variant: its arithmetic.
    """

    def __init__(self, in_first: int, in_second: int, width: int, resample: nn.Module, *, emb_dim: int,
                 tokenwise: bool, variant: Variant) -> None:
        super().__init__()
        self.block1 = ResnetBlock(in_first, width, emb_dim=emb_dim)
        self.block2 = ResnetBlock(in_second, width, emb_dim=emb_dim)
        self.temporal_attention = PreNormTemporalAttentionUnit(width)
        self.tokenwise = TokenwiseStage(width, variant=variant) if tokenwise else None
        self.resample = resample

    def attend(self, x: Tensor) -> Tensor:
        x = self.temporal_attention(x)
        return self.tokenwise(x) if self.tokenwise is not None else x

    def context_features(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """The context's share of ``block1``'s first conv and of its 1x1 shortcut (both linear in the input).

        ``block1(cat(x, h))`` only depends on ``h`` through these two maps, so they are computed once per
        context and reused by every denoiser call that shares it (all steps of a sampler, all segments on
        the global context). Shapes: ``(B, C_h, H, W) -> 2 x (B, width, H, W)``.
        """
        split = self.block1.unit1.conv.in_channels - context.shape[1]
        conv = F.conv2d(context, self.block1.unit1.conv.weight[:, split:], padding=1)
        return conv, F.conv2d(context, self.block1.skip.weight[:, split:])

    def first_block(self, x: Tensor, features: tuple[Tensor, Tensor], emb: Tensor) -> Tensor:
        """``block1(cat(x, h), emb)`` from ``x`` and ``context_features(h)``."""
        block, (context_conv, context_skip) = self.block1, features
        split = x.shape[1]
        conv = block.unit1.conv
        h = F.conv2d(x, conv.weight[:, :split], conv.bias, padding=1) + context_conv
        scale, shift = block.emb_proj(emb)[:, :, None, None].chunk(2, dim=1)
        h = block.unit1.act(block.unit1.norm(h) * (scale + 1) + shift)
        return block.unit2(h) + F.conv2d(x, block.skip.weight[:, :split], block.skip.bias) + context_skip


class RainDiffUNet(nn.Module):
    """Denoiser of one residual segment, predicting the diffusion target (v in both papers).

    Args:
        segment_frames: frames per segment ``S`` (= T_in in both papers).
        dim: base width (64).
        dim_mults: width multipliers per level ((1, 2, 4, 8)).
        channels: channels per frame.
        tokenwise_attention: Token-wise Attention stages at every level and in the middle (RainDiff); False
            gives DiffCast's U-Net with full softmax self-attention in the middle.
        variant: Token-wise Attention arithmetic, ``"paper"`` or ``"released"``.

    Shapes: ``x_t (B, S, C, H, W)``, ``t (B,)`` int64 diffusion steps, ``previous_residual (B, S, C, H, W)`` previous
    residual, ``context`` the encoder's list of ``(B, C_l, H / 2**l, W / 2**l)``, ``segment (B,)`` int64
    segment index -> ``(B, S, C, H, W)``. H and W must be divisible by :attr:`downsampling`.
    """

    def __init__(self, *, segment_frames: int = 5, dim: int = 64, dim_mults: Sequence[int] = (1, 2, 4, 8),
                 channels: int = 1, tokenwise_attention: bool = True, variant: Variant = "paper") -> None:
        super().__init__()
        self.segment_frames, self.channels = segment_frames, channels
        self.downsampling = 2 ** (len(dim_mults) - 1)
        widths = level_widths(dim, dim_mults)
        emb_dim = 8 * dim
        self.stem = nn.Conv2d(2 * segment_frames * channels, dim, 7, padding=3)
        self.time_mlp = EmbeddingMLP(dim, 4 * dim)
        self.segment_mlp = EmbeddingMLP(dim, 4 * dim)
        level = dict(emb_dim=emb_dim, tokenwise=tokenwise_attention, variant=variant)
        self.downs = nn.ModuleList(
            UNetLevel(2 * w_in, w_in, w_in, SpaceToDepthDownsample(w_in, w_out) if i < len(widths) - 1
                      else nn.Conv2d(w_in, w_out, 3, padding=1), **level)
            for i, (w_in, w_out) in enumerate(widths)
        )
        mid = widths[-1][1]
        self.mid_block1 = ResnetBlock(mid, mid, emb_dim=emb_dim)
        self.mid_attention = (TokenwiseStage(mid, variant=variant) if tokenwise_attention
                              else PreNormSelfAttention(mid))
        self.mid_block2 = ResnetBlock(mid, mid, emb_dim=emb_dim)
        self.ups = nn.ModuleList(
            UNetLevel(w_out + w_in, w_out + w_in, w_out, NearestUpsample(w_out, w_in) if i < len(widths) - 1
                      else nn.Conv2d(w_out, w_in, 3, padding=1), **level)
            for i, (w_in, w_out) in enumerate(reversed(widths))
        )
        self.final_block = ResnetBlock(2 * dim, dim, emb_dim=emb_dim)
        self.head = nn.Conv2d(dim, segment_frames * channels, 1)

    def context_features(self, context: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Per-level :meth:`UNetLevel.context_features` of an encoder context list."""
        return [level.context_features(ctx) for level, ctx in zip(self.downs, context, strict=True)]

    def forward(self, x_t: Tensor, t: Tensor, previous_residual: Tensor, context: Sequence[Tensor], segment: Tensor, *,
                features: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """Denoiser output; ``features`` (from :meth:`context_features`) replaces ``context`` when given."""
        if features is None:
            features = self.context_features(context)
        b, s, c, h, w = x_t.shape
        x = self.stem(torch.cat([previous_residual.reshape(b, s * c, h, w), x_t.reshape(b, s * c, h, w)], dim=1))
        stem_out = x
        emb = torch.cat([self.time_mlp(t), self.segment_mlp(segment)], dim=1)
        skips = []
        for level, level_features in zip(self.downs, features, strict=True):
            x = level.first_block(x, level_features, emb)
            skips.append(x)
            x = level.attend(level.block2(x, emb))
            skips.append(x)
            x = level.resample(x)
        x = self.mid_block2(self.mid_attention(self.mid_block1(x, emb)), emb)
        for level in self.ups:
            x = level.block1(torch.cat([x, skips.pop()], dim=1), emb)
            x = level.attend(level.block2(torch.cat([x, skips.pop()], dim=1), emb))
            x = level.resample(x)
        x = self.final_block(torch.cat([x, stem_out], dim=1), emb)
        return self.head(x).reshape(b, s, c, h, w)
