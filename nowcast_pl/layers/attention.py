"""Full multi-head softmax self-attention over the pixels of a feature map (Vaswani et al. 2017, eq. 1): the
attention in the middle of the DiffCast U-Net (Yu et al., CVPR 2024) and at the bottom of the STLDM U-Net.
Quadratic in the number of pixels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PixelSelfAttention(nn.Module):
    """``softmax(Q K^T / sqrt(d_head)) V`` per head over the ``H * W`` pixels; 1x1 convs in and out.

    Args:
        dim: channels of the map.
        heads: attention heads.
        dim_head: width of each head.

    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int, *, heads: int = 4, dim_head: int = 32) -> None:
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.to_qkv = nn.Conv2d(dim, 3 * heads * dim_head, 1, bias=False)
        self.to_out = nn.Conv2d(heads * dim_head, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        qkv = self.to_qkv(x).reshape(b, 3, self.heads, self.dim_head, h * w).transpose(-1, -2)
        out = F.scaled_dot_product_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2])      # (B, heads, n, dim_head)
        return self.to_out(out.transpose(-1, -2).reshape(b, self.heads * self.dim_head, h, w))
