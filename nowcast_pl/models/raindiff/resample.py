"""Resolution changes of the lucidrains-style diffusion U-Net used by DiffCast and RainDiff.

Downsampling is a lossless 2x2 space-to-depth followed by a 1x1 conv (the "pixel unshuffle" downsample of
lucidrains/denoising-diffusion-pytorch); upsampling is nearest-neighbour x2 followed by a 3x3 conv.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SpaceToDepthDownsample(nn.Module):
    """``(B, C, H, W) -> (B, out_channels, H/2, W/2)``: 2x2 space-to-depth (channel ``4c + 2i + j``) + 1x1 conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(4 * in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.pixel_unshuffle(x, 2))


class NearestUpsample(nn.Module):
    """``(B, C, H, W) -> (B, out_channels, 2H, 2W)``: nearest-neighbour x2 then a 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.interpolate(x, scale_factor=2.0, mode="nearest"))
