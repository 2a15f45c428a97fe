"""Convolutional GRU cell (Ballas et al., "Delving Deeper into Convolutional Networks for Learning Video
Representations", ICLR 2016, eqs. 4-7): the GRU of Cho et al. 2014 with 2-D convolutions in place of the
matrix products, so the hidden state is a feature map.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvGRUCell(nn.Module):
    """One ConvGRU step.

    ``(r, z) = sigmoid(conv([x, h]))``, ``c = tanh(conv([x, r * h]))``, ``h' = (1 - z) * h + z * c``.

    Args:
        in_channels: channels of the input map ``x``.
        hidden_channels: channels of the state ``h``.
        kernel_size: odd kernel of both convolutions ("same" padding).

    Shapes: ``x (B, in_channels, H, W)``, ``h (B, hidden_channels, H, W)`` or None (zeros) ->
    ``h' (B, hidden_channels, H, W)``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ConvGRUCell kernel_size must be odd, got {kernel_size}")
        self.hidden_channels = hidden_channels
        pad = kernel_size // 2
        self.gates = nn.Conv2d(in_channels + hidden_channels, 2 * hidden_channels, kernel_size, padding=pad)
        self.candidate = nn.Conv2d(in_channels + hidden_channels, hidden_channels, kernel_size, padding=pad)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
        reset, update = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * h], dim=1)))
        return h + update * (candidate - h)
