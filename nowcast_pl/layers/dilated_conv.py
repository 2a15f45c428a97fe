"""Depthwise dilated convolution that avoids a wrong bf16 weight gradient of PyTorch's CPU kernel.

On CPU, the channels-last bf16 kernel of a dilated depthwise convolution returns a wrong weight gradient
(relative error ~1 or inf instead of ~3e-3) from 32 x 32 frames up, measured for the 7 x 7, dilation-3
convolution of TAU and gSTA with torch 2.14 (``tests/test_dilated_conv.py`` checks it against an fp32
gradient); undilated depthwise and channels-first convolutions are correct. One such gradient made
RainDiff's bf16-mixed training non-finite after one step. This layer runs that case in the channels-first
layout, which costs the channels-last speed-up of this convolution only under bf16 on CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _bf16_on_cpu(x: Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class DilatedDepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(dim, dim, kernel_size, padding, dilation, groups=dim)`` with the same parameters and
    output; bf16 on CPU runs in the channels-first layout (module docstring).

    Shapes: ``(B, dim, H, W) -> (B, dim, H', W')`` as :class:`torch.nn.Conv2d`.
    """

    def __init__(self, dim: int, kernel_size: int, *, dilation: int, padding: int) -> None:
        super().__init__(dim, dim, kernel_size, padding=padding, dilation=dilation, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        if _bf16_on_cpu(x):
            # clone(), not contiguous(): a (dim, 1, k, k) channels-last weight counts as contiguous already,
            # and its strides alone select the channels-last kernel.
            weight = self.weight.clone(memory_format=torch.contiguous_format)
            return self._conv_forward(x.contiguous(), weight, self.bias)
        return super().forward(x)
