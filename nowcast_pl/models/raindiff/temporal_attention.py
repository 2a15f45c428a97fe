"""Temporal Attention Unit (TAU; Tan et al., "Temporal Attention Unit: Towards Efficient Spatiotemporal
Predictive Learning", CVPR 2023, Sec. 3.2, Fig. 3) as used at every level of the DiffCast/RainDiff U-Net,
where "temporal" means the frames of a segment stacked into channels.

The static attention is a large-kernel decomposition (depthwise 5x5, then depthwise 7x7 with dilation 3:
receptive field 21, as in the gSTA block of :mod:`nowcast_pl.layers.gsta`) followed by a 1x1 conv; the
dynamic attention is a squeeze-and-excitation gate over channels (Hu et al., CVPR 2018). Both multiply the
input. Unlike gSTA, the 1x1 conv keeps the width and there is no sigmoid split.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nowcast_pl.layers.dilated_conv import DilatedDepthwiseConv2d


class ChannelRMSNorm(nn.Module):
    """``x / ||x||_2 * sqrt(C) * g`` over the channel axis with a learned per-channel gain ``g`` (init 1).

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(dim))
        self.scale = dim ** 0.5

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) * (self.gain * self.scale)[:, None, None]


class TemporalAttentionModule(nn.Module):
    """``SE(x) * conv1x1(dw7x7_d3(dw5x5(x))) * x`` with an SE bottleneck of ``dim // max(dim // 16, 4)``.

    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int, *, reduction: int = 16) -> None:
        super().__init__()
        self.local = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.dilated = DilatedDepthwiseConv2d(dim, 7, dilation=3, padding=9)
        self.mix = nn.Conv2d(dim, dim, 1)
        squeezed = dim // max(dim // reduction, 4)
        self.excite = nn.Sequential(nn.Linear(dim, squeezed, bias=False), nn.ReLU(),
                                    nn.Linear(squeezed, dim, bias=False), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        gate = self.excite(x.mean(dim=(2, 3)))[:, :, None, None]
        return gate * self.mix(self.dilated(self.local(x))) * x


class TemporalAttentionUnit(nn.Module):
    """TAU block with its own shortcut: ``x + conv1x1(TAM(GELU(conv1x1(x))))``.

    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.attention = TemporalAttentionModule(dim)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.proj_out(self.attention(F.gelu(self.proj_in(x))))


class PreNormTemporalAttentionUnit(nn.Module):
    """``x + TAU(RMSNorm(x))``: the residual, pre-normalised TAU block of each U-Net level.

    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = ChannelRMSNorm(dim)
        self.tau = TemporalAttentionUnit(dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.tau(self.norm(x))
