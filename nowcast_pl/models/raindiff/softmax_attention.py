"""``x + PixelSelfAttention(RMSNorm(x))``, the attention in the middle of the DiffCast U-Net (Yu et al., CVPR 2024);
the attention itself is :class:`nowcast_pl.layers.attention.PixelSelfAttention`, shared with STLDM.
"""

from __future__ import annotations

from torch import Tensor, nn

from nowcast_pl.layers.attention import PixelSelfAttention
from nowcast_pl.models.raindiff.temporal_attention import ChannelRMSNorm


class PreNormSelfAttention(nn.Module):
    """``x + Attention(RMSNorm(x))``. Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``."""

    def __init__(self, dim: int, *, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.norm = ChannelRMSNorm(dim)
        self.attn = PixelSelfAttention(dim, heads=heads, dim_head=dim_head)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(self.norm(x))
