"""Spatio-temporal context encoder of DiffCast (Yu et al., CVPR 2024, Sec. 3.3) and RainDiff
(arXiv:2510.14962, Sec. 3.4, eq. 13), with RainDiff's Post-attention.

Each frame of ``cat(observations, mean forecast)`` passes a 7x7 stem; then ``L`` levels, each a ResNet block
``R^l`` and a ConvGRU ``G^l`` scanning the frames in order: ``h_j^l = G^l(R^l(x_j^l), h_{j-1}^l)``; the
next level's input is the 2x2 space-to-depth downsampled state ``x_j^{l+1} = D^l(h_j^l)``. The conditioning
``h`` is the list of per-level states.

Two contexts are returned (the released code's "global" and "local" motion priors):
* global: the states after the last frame, each refined once by a Token-wise Attention stage when
  Post-attention is on (RainDiff Sec. 3.4: attention after the encoder outputs, not inside the recurrence);
* local: the raw states after frame ``local_frame`` (0-based; the released code uses ``T_in``, i.e. all
  observations and the first mean frame). The released code conditions the first residual segment on it.

Because level ``l + 1`` only needs the states of level ``l``, the scan runs level by level: the stem, the
ResNet blocks and the downsampling run on batches of frames, and only the GRU steps are sequential. This is
the same computation as a frame-by-frame scan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from nowcast_pl.layers.checkpointing import checkpointed
from nowcast_pl.layers.unet import ResnetBlock
from nowcast_pl.models.raindiff.convgru import ConvGRUCell
from nowcast_pl.models.raindiff.resample import SpaceToDepthDownsample
from nowcast_pl.models.raindiff.tokenwise_attention import TokenwiseStage, Variant


def level_widths(dim: int, dim_mults: Sequence[int]) -> list[tuple[int, int]]:
    """(width of level l, width of level l + 1) pairs: ``dims = [dim, dim * m_0, dim * m_1, ...]``.

    For ``dim = 64, dim_mults = (1, 2, 4, 8)``: ``[(64, 64), (64, 128), (128, 256), (256, 512)]``.
    """
    dims = [dim, *(dim * m for m in dim_mults)]
    return list(zip(dims[:-1], dims[1:], strict=True))


def map_in_groups(function: Callable[[Tensor], Tensor], frames: Sequence[Tensor],
                  group_bytes: int) -> list[Tensor]:
    """``[function(frame) for frame in frames]``, batching as many frames per call as fit in ``group_bytes``.

    ``function`` must treat batch rows independently. Groups are concatenated along the batch axis and the
    output split back into frames, so no tensor holds more than one group: on CPU, tensors above glibc's
    largest heap block (32 MiB) are mapped fresh from the kernel on every allocation, and filling their
    pages cost more than the batching saved (the encoder's 25 frames of 64 x 128 x 128 are 105 MB).

    Shapes: each frame ``(B, ...)`` -> a list of the same length of ``(B, ...)`` outputs.
    """
    rows = max(1, group_bytes // (frames[0].numel() * frames[0].element_size()))
    outputs = []
    for start in range(0, len(frames), rows):
        group = frames[start:start + rows]
        outputs.extend(function(torch.cat(list(group))).chunk(len(group)))
    return outputs


class ContextLevel(nn.Module):
    """One encoder level: ResNet block, ConvGRU, and (except the last level) a downsample to the next width.

    Args:
        width: channels of the level's inputs and states.
        next_width: channels of the next level, or None for the last level (no downsample).
        group_bytes: largest input batch of the ResNet block and the downsample (:func:`map_in_groups`).
    """

    def __init__(self, width: int, next_width: int | None, group_bytes: int) -> None:
        super().__init__()
        self.group_bytes = group_bytes
        self.resnet = ResnetBlock(width, width)
        self.gru = ConvGRUCell(width, width, 3)
        self.downsample = SpaceToDepthDownsample(width, next_width) if next_width is not None else None

    def scan(self, frames: Sequence[Tensor]) -> list[Tensor]:
        """T level inputs ``(B, C, H, W)`` -> the T GRU states ``(B, C, H, W)`` after each frame (h_0 = 0).

        Frames and states are lists, not slices of a ``(B, T, ...)`` tensor: the backward of indexing one
        frame out of a stacked tensor fills a zero tensor of the whole stack, T times per scan.
        """
        state, states = None, []
        for feature in map_in_groups(self.resnet, frames, self.group_bytes):
            state = self.gru(feature, state)
            states.append(state)
        return states

    def next_inputs(self, states: Sequence[Tensor]) -> list[Tensor]:
        """The next level's inputs: every state downsampled, ``(B, C, H, W) -> (B, C', H / 2, W / 2)``."""
        return map_in_groups(self.downsample, states, self.group_bytes)


class SpatioTemporalEncoder(nn.Module):
    """Cascaded ResNet + ConvGRU encoder with optional Post-attention (module docstring).

    Args:
        dim: stem width (64 in both papers).
        dim_mults: level widths are ``dim * [1] + dim * dim_mults[:-1]`` (the U-Net's encoder widths).
        channels: channels per frame.
        post_attention: refine each global state with a :class:`TokenwiseStage` (RainDiff) or not (DiffCast).
        variant: Token-wise Attention arithmetic of the Post-attention stages.
        group_bytes: frames are batched through the stem, ResNet blocks and downsamples in groups whose
            inputs fit in this many bytes (:func:`map_in_groups`); it changes speed, not results.

    Shapes: ``frames (B, T, channels, H, W)`` in [-1, 1], H and W divisible by ``2 ** (len(dim_mults) - 1)``
    -> ``(global, local)``, each a list of ``(B, C_l, H / 2**l, W / 2**l)`` with ``C_l`` = 64, 64, 128, 256
    at the paper config.
    """

    def __init__(self, dim: int = 64, dim_mults: Sequence[int] = (1, 2, 4, 8), *, channels: int = 1,
                 post_attention: bool = True, variant: Variant = "paper", group_bytes: int = 16 * 2**20) -> None:
        super().__init__()
        widths = level_widths(dim, dim_mults)
        self.group_bytes = group_bytes
        self.stem = nn.Conv2d(channels, dim, 7, padding=3)
        self.levels = nn.ModuleList(
            ContextLevel(w_in, w_out if i < len(widths) - 1 else None, group_bytes)
            for i, (w_in, w_out) in enumerate(widths)
        )
        self.post_attention = (nn.ModuleList(TokenwiseStage(w_in, variant=variant) for w_in, _ in widths)
                               if post_attention else None)

    def forward(self, frames: Tensor, local_frame: int, *,
                checkpoint: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        """Contexts; ``checkpoint`` recomputes each level's scan and Post-attention in backward (exact)."""
        b, t, c, h, w = frames.shape
        if not 0 <= local_frame < t:
            raise ValueError(f"local_frame must index one of the {t} scanned frames, got {local_frame}")
        stem_group_bytes = self.group_bytes * self.stem.in_channels // self.stem.out_channels  # outputs within budget
        x = map_in_groups(self.stem, frames.unbind(dim=1), stem_group_bytes)
        global_ctx, local_ctx = [], []
        for level in self.levels:
            states = checkpointed(level, level.scan, x) if checkpoint else level.scan(x)
            global_ctx.append(states[-1])
            local_ctx.append(states[local_frame])
            if level.downsample is not None:
                x = level.next_inputs(states)
        if self.post_attention is not None:
            global_ctx = [checkpointed(stage, stage, g) if checkpoint else stage(g)
                          for stage, g in zip(self.post_attention, global_ctx, strict=True)]
        return global_ctx, local_ctx
