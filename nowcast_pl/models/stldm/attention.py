"""Attention blocks of video diffusion U-Nets (STLDM, Foo et al., arXiv:2512.21118, Sec. 3.2 and Fig. 3).

* :class:`PatchLinearAttention` — "linearized" spatial attention (Shen et al., "Efficient Attention",
  WACV 2021; the lucidrains form) computed separately inside each non-overlapping ``patch x patch`` window.
* :class:`~nowcast_pl.layers.attention.PixelSelfAttention` (shared with DiffCast) — multi-head softmax
  attention over all H*W positions (Vaswani et al. 2017).
* :class:`FrameAttention` — softmax attention across frames at each pixel, without time positions.
* :class:`GainLayerNorm` — normalisation over one axis with a per-channel gain and no bias.
* :class:`PreNormResidual` — ``x + fn(norm(x))``.

Spatial blocks take frames folded into the batch, ``(N, C, H, W)``; temporal blocks take ``(B, T, C, H, W)``.
Channel layouts follow ``(heads, dim_head)`` with heads outermost, so weights map one to one onto the
released STLDM code (used by the checkpoint converter).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast_pl.layers.attention import PixelSelfAttention

TemporalNorm = Literal["time", "channels"]


class GainLayerNorm(nn.Module):
    """``(x - mean) / sqrt(var + eps) * g`` with mean and biased variance over ``reduce_dim``.

    The gain ``g`` (``(channels,)``, initialised to 1) multiplies along ``channel_dim``. With
    ``reduce_dim == channel_dim`` this is a bias-free layer norm over channels; STLDM's temporal pre-norm
    reduces over time (``reduce_dim=1`` of ``(B, T, C, H, W)``) while the gain stays per channel.

    Shapes: any tensor whose ``channel_dim`` has ``channels`` entries; the output has the input's shape.
    """

    def __init__(self, channels: int, *, channel_dim: int = 1, reduce_dim: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.channel_dim, self.reduce_dim, self.eps = channel_dim, reduce_dim, eps

    def forward(self, x: Tensor) -> Tensor:
        # Computed on a view whose axes are in memory order, then permuted back: on CPU a reduction over time
        # of a channels-last (B, T, C, H, W) map is otherwise several times slower (benchmarks/cpu_kernels.py).
        # Two passes (mean, then mean of squared deviations): torch.var_mean is slower still for these shapes.
        order = sorted(range(x.ndim), key=lambda axis: -x.stride(axis))
        y = x.permute(order)
        reduce_dim, channel_dim = order.index(self.reduce_dim % x.ndim), order.index(self.channel_dim % x.ndim)
        mean = y.mean(dim=reduce_dim, keepdim=True)
        centred = y - mean
        var = centred.square().mean(dim=reduce_dim, keepdim=True)
        shape = [1] * x.ndim
        shape[channel_dim] = -1
        out = centred * torch.rsqrt(var + self.eps) * self.gain.view(shape)
        return out.permute([order.index(axis) for axis in range(x.ndim)])


class PreNormResidual(nn.Module):
    """``x + fn(norm(x))``: the pre-norm residual wrapper of every attention block."""

    def __init__(self, norm: nn.Module, fn: nn.Module) -> None:
        super().__init__()
        self.norm, self.fn = norm, fn

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fn(self.norm(x))


class PatchLinearAttention(nn.Module):
    """Linear attention inside each ``patch x patch`` window of a feature map.

    Per head and window with tokens n: ``q = softmax_channels(Q) * dim_head**-0.5``, ``k = softmax_tokens(K)``,
    ``context = k v^T`` (d x e), ``out = context^T q``; then a 1x1 conv back to ``dim`` and a channel
    :class:`GainLayerNorm`. Cost is linear in the number of tokens.

    Args:
        dim: input/output channels.
        patch_size: window side; must divide H and W.
        heads, dim_head: attention heads and their width (q/k/v have ``heads * dim_head`` channels).

    Shapes: ``(N, dim, H, W) -> (N, dim, H, W)``.
    """

    #: Largest q, k, v activation (bytes) computed at once; a batch needing more is split over its rows
    #: (windows are independent, so the result is the same). On CPU a fresh block above glibc's 32 MiB mmap
    #: limit is page-faulted in on every call, which splitting avoids (measured in docs/stldm.md).
    chunk_bytes = 16 * 2**20

    def __init__(self, dim: int, patch_size: int, *, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.patch_size, self.heads, self.scale = patch_size, heads, dim_head ** -0.5
        self.to_qkv = nn.Conv2d(dim, 3 * heads * dim_head, 1, bias=False)
        self.to_out = nn.Conv2d(heads * dim_head, dim, 1)
        self.out_norm = GainLayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"PatchLinearAttention: feature map {h}x{w} is not divisible by patch_size={p}")
        rows = max(1, self.chunk_bytes // (self.to_qkv.out_channels * h * w * x.element_size()))
        out = torch.cat([self._attend(part) for part in x.split(rows)]) if n > rows else self._attend(x)
        return self.out_norm(self.to_out(out.permute(0, 3, 1, 2)))

    def _attend(self, x: Tensor) -> Tensor:
        """``(N, dim, H, W)`` -> attention output ``(N, H, W, heads * e)`` (channels last, before ``to_out``).

        Windows are laid out ``(N, heads, H/p, W/p, p*p, d)``, channels innermost, so that gathering them from a
        channels-last map copies contiguous runs of ``d`` values.
        """
        n, _, h, w = x.shape
        p, nh, nw = self.patch_size, h // self.patch_size, w // self.patch_size
        qkv = self.to_qkv(x).permute(0, 2, 3, 1).reshape(n, nh, p, nw, p, 3, self.heads, -1)
        q, k, v = qkv.permute(5, 0, 6, 1, 3, 2, 4, 7).reshape(3, n, self.heads, nh, nw, p * p, -1).unbind(0)
        context = k.softmax(dim=-2).transpose(-1, -2) @ v                             # (..., d, e)
        out = (q.softmax(dim=-1) @ context) * self.scale                              # (..., p*p, e)
        return out.reshape(n, self.heads, nh, nw, p, p, -1).permute(0, 2, 4, 3, 5, 1, 6).reshape(n, h, w, -1)


class FrameAttention(nn.Module):
    """Softmax attention across the T frames at every pixel; no time positional encoding.

    q, k, v are bias-free linear maps ``dim -> heads * dim_head``; the output map has a bias. The attention is
    permutation-equivariant in time: frames are told apart only through their content.

    Shapes: ``(B, T, dim, H, W) -> (B, T, dim, H, W)``.
    """

    def __init__(self, dim: int, *, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_k = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_v = nn.Linear(dim, heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        tokens = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, t, c)
        q, k, v = (proj(tokens).reshape(b * h * w, t, self.heads, -1).transpose(1, 2)
                   for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b * h * w, t, -1)
        return self.to_out(out).reshape(b, h, w, t, c).permute(0, 3, 4, 1, 2)


def temporal_block(dim: int, *, norm_over: TemporalNorm = "time", heads: int = 4,
                   dim_head: int = 32) -> PreNormResidual:
    """Pre-norm residual :class:`FrameAttention` on ``(B, T, dim, H, W)``.

    ``norm_over="time"`` reproduces the released STLDM code, whose pre-norm normalises each (b, c, h, w)
    across the T frames; ``"channels"`` is the usual layer norm over channels.
    """
    if norm_over not in ("time", "channels"):
        raise ValueError(f"temporal_norm must be 'time' (released STLDM) or 'channels', got {norm_over!r}")
    norm = GainLayerNorm(dim, channel_dim=2, reduce_dim=1 if norm_over == "time" else 2)
    return PreNormResidual(norm, FrameAttention(dim, heads=heads, dim_head=dim_head))


def spatial_block(dim: int, patch_size: int | None, *, heads: int = 4, dim_head: int = 32) -> PreNormResidual:
    """Pre-norm residual spatial attention on ``(N, dim, H, W)``: patch-wise linear, or full if no patch."""
    fn = (PixelSelfAttention(dim, heads=heads, dim_head=dim_head) if patch_size is None
          else PatchLinearAttention(dim, patch_size, heads=heads, dim_head=dim_head))
    return PreNormResidual(GainLayerNorm(dim), fn)
