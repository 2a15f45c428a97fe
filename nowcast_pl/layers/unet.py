"""Blocks shared by the diffusion U-Nets of RainDiff/DiffCast and STLDM.

Both denoisers follow the DDPM U-Net of Ho et al. 2020 (App. B) in the form popularised by
lucidrains/denoising-diffusion-pytorch: a sinusoidal timestep embedding (Vaswani et al. 2017, Sec. 3.5)
mapped by a two-layer MLP, and residual blocks of two conv units whose first unit applies the embedding
as a per-channel scale and shift after its GroupNorm (FiLM, Perez et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal embedding of integer or real positions (Vaswani et al. 2017, Sec. 3.5).

    ``emb[:, i] = sin(t * f_i)`` and ``emb[:, half + i] = cos(t * f_i)`` with
    ``f_i = exp(-i * log(10000) / (half - 1))``, ``half = dim // 2``.

    Args:
        dim: embedding width (even, >= 4).

    Shapes: ``(B,)`` positions (e.g. diffusion timesteps 0..T-1) -> ``(B, dim)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2 or dim < 4:
            raise ValueError(f"SinusoidalEmbedding dim must be even and >= 4, got {dim}")
        self.dim = dim

    def forward(self, positions: Tensor) -> Tensor:
        half = self.dim // 2
        step = math.log(10000.0) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32) * -step)
        angles = positions.float()[:, None] * freqs[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


class EmbeddingMLP(nn.Module):
    """Sinusoidal embedding -> Linear -> GELU -> Linear: the timestep (or segment-index) embedding.

    Args:
        dim: sinusoidal width (64 in both papers).
        out_dim: output width (4 * dim = 256 in both papers).

    Shapes: ``(B,)`` -> ``(B, out_dim)``.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(SinusoidalEmbedding(dim), nn.Linear(dim, out_dim), nn.GELU(),
                                 nn.Linear(out_dim, out_dim))

    def forward(self, positions: Tensor) -> Tensor:
        return self.net(positions)


class ConvUnit(nn.Module):
    """3x3 conv -> GroupNorm -> optional ``x * (1 + scale) + shift`` -> SiLU.

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H, W)``; ``scale``/``shift`` are ``(N, out, 1, 1)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, groups: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm = nn.GroupNorm(groups, out_channels)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, scale_shift: tuple[Tensor, Tensor] | None = None) -> Tensor:
        x = self.norm(self.conv(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return self.act(x)


class ResnetBlock(nn.Module):
    """Two :class:`ConvUnit` s with a residual; an embedding, if given, scales and shifts the first unit.

    Args:
        in_channels: input channels.
        out_channels: output channels; the residual is a 1x1 conv when they differ from the input's.
        emb_dim: width of the conditioning embedding, or None for an unconditioned block.
        groups: GroupNorm groups.

    Shapes: ``x (N, in_channels, H, W)``, ``emb (N, emb_dim)`` -> ``(N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, emb_dim: int | None = None, groups: int = 8) -> None:
        super().__init__()
        self.emb_proj = (nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_channels))
                         if emb_dim is not None else None)
        self.unit1 = ConvUnit(in_channels, out_channels, groups=groups)
        self.unit2 = ConvUnit(out_channels, out_channels, groups=groups)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        scale_shift = None
        if self.emb_proj is not None and emb is not None:
            scale_shift = self.emb_proj(emb)[:, :, None, None].chunk(2, dim=1)
        return self.unit2(self.unit1(x, scale_shift)) + self.skip(x)


class Residual(nn.Module):
    """``x + fn(x)``."""

    def __init__(self, fn: Callable[[Tensor], Tensor] | nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fn(x)
