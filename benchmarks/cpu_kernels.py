"""CPU timings behind three layer choices of STLDM and RainDiff (fp32, milliseconds, median of repeats).

Prints one JSON object:

* ``conv_layout``: a 3x3 convolution over 40 maps (STLDM's guided U-Net batch) in NCHW against channels-last,
  at the 4x4 bottom (512 -> 512) and at 8x8 (256 -> 256): the choice of
  :func:`nowcast_pl.models.stldm.memory_layout.conv_layout`.
* ``temporal_norm``: STLDM's pre-norm over time (:class:`~nowcast_pl.models.stldm.attention.GainLayerNorm`) of a
  channels-last ``(2, 20, 64, 32, 32)`` map, reduced along the axes as given against in memory order (what the
  layer does).
* ``dilated_conv``: the 7x7 dilation-3 depthwise convolution of TAU and gSTA, channels-last, forward and forward
  + backward, PyTorch's dilated kernel against :class:`~nowcast_pl.layers.dilated_conv.DilatedDepthwiseConv2d`.

    python -m benchmarks.cpu_kernels [--output benchmarks/results/cpu_kernels.json]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.harness import output_argument, write_result


def milliseconds(fn, repeats: int = 15) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 3)


def conv_layout() -> list[dict]:
    rows = []
    for channels, size in ((512, 4), (256, 8)):
        x = torch.randn(40, channels, size, size)
        weight, bias = torch.randn(channels, channels, 3, 3), torch.randn(channels)
        x_cl, weight_cl = (t.contiguous(memory_format=torch.channels_last) for t in (x, weight))
        rows.append({"maps": f"40 x {channels} x {size} x {size}",
                     "nchw_ms": milliseconds(partial(F.conv2d, x, weight, bias, padding=1)),
                     "channels_last_ms": milliseconds(partial(F.conv2d, x_cl, weight_cl, bias, padding=1))})
    return rows


def temporal_norm() -> dict:
    from nowcast_pl.models.stldm.attention import GainLayerNorm

    norm = GainLayerNorm(64, channel_dim=2, reduce_dim=1)
    x = torch.randn(40, 64, 32, 32).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 20))

    def as_given() -> torch.Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        var = centred.square().mean(dim=1, keepdim=True)
        return centred * torch.rsqrt(var + norm.eps) * norm.gain.view(1, 1, -1, 1, 1)

    with torch.no_grad():
        difference = float((as_given() - norm(x)).abs().max())
        return {"map": "2 x 20 x 64 x 32 x 32, channels-last", "axes_as_given_ms": milliseconds(as_given),
                "memory_order_ms": milliseconds(lambda: norm(x)), "max_abs_difference": difference}


def _forward_backward(conv: nn.Module, x: torch.Tensor) -> None:
    conv(x).sum().backward()


def dilated_conv() -> list[dict]:
    from nowcast_pl.layers.dilated_conv import DilatedDepthwiseConv2d

    rows = []
    for channels, size in ((64, 128), (256, 32), (512, 16), (512, 32)):
        ours = DilatedDepthwiseConv2d(channels, 7, dilation=3, padding=9).to(memory_format=torch.channels_last)
        plain = nn.Conv2d(channels, channels, 7, padding=9, dilation=3, groups=channels)
        plain.load_state_dict(ours.state_dict())
        plain.to(memory_format=torch.channels_last)
        x = torch.randn(1, channels, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()

        with torch.no_grad():
            row = {"map": f"1 x {channels} x {size} x {size}",
                   "max_abs_difference": float((ours(x) - plain(x)).abs().max()),
                   "pytorch_forward_ms": milliseconds(partial(plain, x)),
                   "ours_forward_ms": milliseconds(partial(ours, x))}
        row |= {"pytorch_forward_backward_ms": milliseconds(partial(_forward_backward, plain, x)),
                "ours_forward_backward_ms": milliseconds(partial(_forward_backward, ours, x))}
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_kernels", description=__doc__.splitlines()[0])
    output_argument(parser)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    result = {"dtype": "float32", "conv_layout": conv_layout(), "temporal_norm": temporal_norm(),
              "dilated_conv": dilated_conv()}
    return write_result(result, args.output, module="benchmarks.cpu_kernels", argv=argv)


if __name__ == "__main__":
    main()
