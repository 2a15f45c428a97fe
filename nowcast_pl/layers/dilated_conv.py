"""Depthwise dilated convolution: faster on CPU, and avoiding a wrong bf16 weight gradient of PyTorch's CPU kernel.

Speed: oneDNN's dilated depthwise kernels are slow on CPU (for the 7 x 7, dilation-3 convolution of TAU and
gSTA). A "same" dilated convolution equals an undilated one run on the ``d x d`` phase sub-grids of the map
(``x[i::d, j::d]`` stacked into the batch, the "space-to-batch" form), which is faster on fp32 CPU, forward and
backward, with the same values up to float rounding (``python -m benchmarks.cpu_kernels``; measured figures in
``benchmarks/README.md``).

Correctness: on CPU, the channels-last bf16 kernel of a dilated depthwise convolution returns a wrong weight gradient
(relative error ~1 or inf instead of ~3e-3) from 32 x 32 frames up, measured for the 7 x 7, dilation-3
convolution of TAU and gSTA with torch 2.14 (``tests/layers/test_dilated_conv.py`` checks it against an fp32
gradient); undilated depthwise and channels-first convolutions are correct. One such gradient made
RainDiff's bf16-mixed training non-finite after one step. This layer runs that case in the channels-first
layout, which costs the channels-last speed-up of this convolution only under bf16 on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _bf16_on_cpu(x: Tensor) -> bool:
    if x.device.type != "cpu":
        return False
    if x.dtype == torch.bfloat16:
        return True
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class DilatedDepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(dim, dim, kernel_size, padding, dilation, groups=dim)`` with the same parameters and
    output. On CPU, a "same" convolution (odd kernel, ``padding = dilation * (kernel_size - 1) / 2``) runs in
    the space-to-batch form, except under bf16, which runs in the channels-first layout (module docstring).

    Shapes: ``(B, dim, H, W) -> (B, dim, H', W')`` as :class:`torch.nn.Conv2d`.
    """

    def __init__(self, dim: int, kernel_size: int, *, dilation: int, padding: int) -> None:
        super().__init__(dim, dim, kernel_size, padding=padding, dilation=dilation, groups=dim)
        k, d = self.kernel_size[0], self.dilation[0]
        self.same_size = (self.kernel_size[0] == self.kernel_size[1] and k % 2 == 1 and d > 1
                          and self.dilation == (d, d) and self.padding == (d * (k // 2),) * 2)

    def forward(self, x: Tensor) -> Tensor:
        if _bf16_on_cpu(x):
            # clone(), not contiguous(): a (dim, 1, k, k) channels-last weight counts as contiguous already,
            # and its strides alone select the channels-last kernel.
            weight = self.weight.clone(memory_format=torch.contiguous_format)
            return self._conv_forward(x.contiguous(), weight, self.bias)
        if self.same_size and x.device.type == "cpu":
            return self._space_to_batch(x)
        return super().forward(x)

    def _space_to_batch(self, x: Tensor) -> Tensor:
        """The dilated convolution as an undilated one over the ``d x d`` phase sub-grids of the map, zero-padded
        at the bottom and right to a multiple of ``d`` (the zeros the dilated convolution pads with there)."""
        d, (b, c, h, w) = self.dilation[0], x.shape
        hp, wp = -(-h // d) * d, -(-w // d) * d
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        padded = F.pad(x, (0, wp - w, 0, hp - h))
        phases = padded.reshape(b, c, hp // d, d, wp // d, d).permute(0, 3, 5, 1, 2, 4).reshape(
            b * d * d, c, hp // d, wp // d)
        if channels_last:
            phases = phases.contiguous(memory_format=torch.channels_last)
        out = F.conv2d(phases, self.weight, self.bias, padding=self.padding[0] // d, groups=c)
        out = out.reshape(b, d, d, c, hp // d, wp // d).permute(0, 3, 4, 1, 5, 2).reshape(b, c, hp, wp)
        out = out[:, :, :h, :w]
        return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
