"""Memory layout of feature maps for fast CPU convolutions.

oneDNN (PyTorch's CPU convolution backend) picks its kernels from the input's layout when the weights are in
the default NCHW layout. On CPU in fp32, channels-last is as fast or faster from 8 x 8 pixels up (most of all for
depthwise convolutions) and NCHW is faster for the tiny maps at the bottom of a U-Net (``python -m
benchmarks.cpu_kernels``; measured figures in ``docs/stldm.md``). Values are the same in either layout up to
float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Maps with more pixels than this go channels-last; smaller ones NCHW.
CHANNELS_LAST_MIN_PIXELS = 16


def conv_layout(x: Tensor) -> Tensor:
    """``x`` (``(N, C, H, W)``) in the faster layout for its map size: channels-last if ``H * W`` exceeds
    :data:`CHANNELS_LAST_MIN_PIXELS`, else NCHW. A copy only when the layout changes."""
    channels_last = x.shape[-2] * x.shape[-1] > CHANNELS_LAST_MIN_PIXELS
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
