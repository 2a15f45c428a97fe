"""SimVP spatial encoder and decoder (Gao et al., "SimVP: Simpler yet Better Video Prediction", CVPR 2022,
Sec. 3, Fig. 2).

Both work on single frames: time is folded into the batch, ``N = B * T``. The encoder stacks ``num_layers``
conv units whose downsampling pattern alternates ``[False, True, False, True, ...]``, so the latent is
``2 ** (num_layers // 2)`` times smaller than the input. The decoder mirrors it with PixelShuffle
upsampling, adds the encoder's first feature map (full resolution) before its last unit, and reads out
with a 1x1 conv. The output is not clamped or squashed.
"""

from typing import Literal

import torch
from torch import nn

Resample = Literal["none", "down", "up"]


def resampling_pattern(num_layers: int) -> list[bool]:
    """Which encoder units downsample: ``[False, True, False, True, ...]`` of length ``num_layers``.

    The decoder uses the reversed list for upsampling. For even ``num_layers`` this is the SimVP pattern.
    """
    return [i % 2 == 1 for i in range(num_layers)]


def num_downsamplings(num_layers: int) -> int:
    """Number of stride-2 units in a spatial encoder of ``num_layers`` units (each halves H and W)."""
    return sum(resampling_pattern(num_layers))


class ConvNormAct(nn.Module):
    """Conv -> GroupNorm(2 groups) -> SiLU, the basic SimVP unit (``ConvSC`` in the SimVP code).

    Args:
        in_channels: input channels.
        out_channels: output channels (even, for the 2-group norm).
        kernel_size: odd square kernel; padding keeps the size ("same").
        resample: ``"none"`` keeps (H, W); ``"down"`` uses stride 2 and gives (H/2, W/2);
            ``"up"`` convolves to ``4 * out_channels`` then PixelShuffle(2) and gives (2H, 2W).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H', W')``.

    Raises:
        ValueError: for an even kernel, odd ``out_channels`` or an unknown ``resample``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3,
                 resample: Resample = "none") -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if out_channels % 2 != 0:
            raise ValueError(f"out_channels must be even for GroupNorm(2), got {out_channels}")
        if resample not in ("none", "down", "up"):
            raise ValueError(f"resample must be 'none', 'down' or 'up', got {resample!r}")
        stride = 2 if resample == "down" else 1
        conv_out = 4 * out_channels if resample == "up" else out_channels
        conv = nn.Conv2d(in_channels, conv_out, kernel_size, stride=stride, padding=kernel_size // 2)
        # SimVP zeroes conv biases and keeps PyTorch's default weight init (raindiff.md §1).
        nn.init.zeros_(conv.bias)
        shuffle = [nn.PixelShuffle(2)] if resample == "up" else []
        self.body = nn.Sequential(conv, *shuffle, nn.GroupNorm(2, out_channels), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SpatialEncoder(nn.Module):
    """Per-frame conv encoder; returns the latent and the first unit's output as a skip.

    Args:
        in_channels: channels per input frame (C).
        hidden: latent channels (``hid_S``).
        num_layers: number of units (``N_S``, >= 1); ``num_layers // 2`` of them downsample.
        kernel_size: odd kernel of every unit.

    Shapes: ``(N, C, H, W) -> (latent (N, hid_S, H / 2**d, W / 2**d), skip (N, hid_S, H, W))``
    with ``d = num_layers // 2``; H and W must be divisible by ``2**d``.
    """

    def __init__(self, in_channels: int, hidden: int, num_layers: int, *, kernel_size: int = 3) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        widths = [in_channels] + [hidden] * num_layers
        self.units = nn.ModuleList(
            ConvNormAct(widths[i], hidden, kernel_size=kernel_size, resample="down" if down else "none")
            for i, down in enumerate(resampling_pattern(num_layers))
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.units[0](x)
        latent = skip
        for unit in self.units[1:]:
            latent = unit(latent)
        return latent, skip


class SpatialDecoder(nn.Module):
    """Per-frame conv decoder mirroring :class:`SpatialEncoder`, with the skip added before the last unit.

    Args:
        hidden: latent channels (``hid_S``).
        out_channels: channels per output frame (C).
        num_layers: number of units (``N_S``); ``num_layers // 2`` of them upsample by 2.
        kernel_size: odd kernel of every unit.

    Shapes: ``latent (N, hid_S, H / 2**d, W / 2**d)`` and ``skip (N, hid_S, H, W)`` -> ``(N, C, H, W)``,
    unbounded (no output activation).
    """

    def __init__(self, hidden: int, out_channels: int, num_layers: int, *, kernel_size: int = 3) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.units = nn.ModuleList(
            ConvNormAct(hidden, hidden, kernel_size=kernel_size, resample="up" if up else "none")
            for up in reversed(resampling_pattern(num_layers))
        )
        self.readout = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, latent: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        z = latent
        for unit in self.units[:-1]:
            z = unit(z)
        return self.readout(self.units[-1](z + skip))
