"""SimVP v1 IncepU translator (Gao et al., "SimVP: Simpler yet Better Video Prediction", CVPR 2022,
Sec. 3, Fig. 2): a U-shaped stack of grouped Inception blocks on frames stacked into channels.

The caller folds time into channels, ``(B, T, C', h, w) -> (B, T * C', h, w)`` (frame-major: channel index
``t * C' + c``), so every convolution here mixes time and features at once.
"""

from collections.abc import Sequence

import torch
from torch import nn

INCEPTION_KERNELS = (3, 5, 7, 11)


def _check_divisible(name: str, value: int, groups: int) -> None:
    if value % groups != 0:
        raise ValueError(f"{name} must be divisible by groups={groups}, got {value}")


class GroupedInceptionBlock(nn.Module):
    """1x1 reduction, then the SUM of parallel grouped convs (``gInception_ST`` in the SimVP code).

    Each branch is ``Conv2d(k, groups) -> GroupNorm(groups) -> LeakyReLU(0.2)`` with "same" padding; the
    branch outputs are added, not concatenated.

    Args:
        in_channels: input channels.
        hidden_channels: width after the 1x1 reduction (SimVP uses ``hid_T // 2``).
        out_channels: output channels.
        kernel_sizes: odd kernel of each branch.
        groups: groups of every branch conv and GroupNorm; must divide hidden and output widths (SimVP's
            silent fallback to 1 group is not reproduced: a mismatch raises instead).

    Shapes: ``(B, in_channels, h, w) -> (B, out_channels, h, w)``.
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, *,
                 kernel_sizes: Sequence[int] = INCEPTION_KERNELS, groups: int = 8) -> None:
        super().__init__()
        _check_divisible("hidden_channels", hidden_channels, groups)
        _check_divisible("out_channels", out_channels, groups)
        if any(k % 2 != 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must all be odd, got {tuple(kernel_sizes)}")
        self.reduce = nn.Conv2d(in_channels, hidden_channels, 1)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(hidden_channels, out_channels, k, padding=k // 2, groups=groups),
                nn.GroupNorm(groups, out_channels),
                nn.LeakyReLU(0.2),
            )
            for k in kernel_sizes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.reduce(x)
        return sum(branch(z) for branch in self.branches)


class IncepUTranslator(nn.Module):
    """U-Net of grouped Inception blocks (``MidIncepNet`` in the SimVP code).

    The encoder has ``depth`` blocks (``channels_in -> hidden``, then ``hidden -> hidden``); the decoder has
    ``depth`` blocks, the first on the bottleneck and each further one on ``cat(z, skip)`` with the encoder
    outputs taken in reverse order (all but the bottleneck), the last mapping ``2 * hidden -> channels_out``.
    Every block reduces to ``hidden // 2`` first.

    Args:
        channels_in: stacked input width, ``T_in * hid_S``.
        hidden: translator width (``hid_T``, even).
        channels_out: stacked output width, ``T_out * hid_S`` (may differ from ``channels_in``).
        depth: blocks per U-Net side (``N_T``, >= 2).
        kernel_sizes: Inception branch kernels.
        groups: branch conv/norm groups.

    Shapes: ``(B, channels_in, h, w) -> (B, channels_out, h, w)``.
    """

    def __init__(self, channels_in: int, hidden: int, channels_out: int, depth: int, *,
                 kernel_sizes: Sequence[int] = INCEPTION_KERNELS, groups: int = 8) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if hidden % 2 != 0:
            raise ValueError(f"hidden must be even (blocks reduce to hidden // 2), got {hidden}")

        def block(c_in: int, c_out: int) -> GroupedInceptionBlock:
            return GroupedInceptionBlock(c_in, hidden // 2, c_out, kernel_sizes=kernel_sizes, groups=groups)

        self.encoder = nn.ModuleList([block(channels_in, hidden)])
        self.encoder.extend(block(hidden, hidden) for _ in range(depth - 1))
        self.decoder = nn.ModuleList([block(hidden, hidden)])
        self.decoder.extend(block(2 * hidden, hidden) for _ in range(depth - 2))
        self.decoder.append(block(2 * hidden, channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        z = x
        for block in self.encoder:
            z = block(z)
            skips.append(z)
        skips.pop()  # the bottleneck output feeds the decoder directly, not as a skip
        z = self.decoder[0](z)
        for block, skip in zip(self.decoder[1:], reversed(skips), strict=True):
            z = block(torch.cat([z, skip], dim=1))
        return z
