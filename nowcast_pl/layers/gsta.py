"""Gated spatiotemporal attention (gSTA) translator of SimVP-v2 (Tan et al., "SimVP: Towards Simple yet
Powerful Spatiotemporal Predictive Learning", arXiv:2211.12509, 2022; ``MidMetaNet``/``GASubBlock`` in the
OpenSTL code). STLDM uses it as its Translator (stldm.md §1.2).

Like the IncepU translator it works on frames stacked into channels, ``(B, T * C', h, w)``, but it is a plain
(non-U) stack of MetaFormer-style blocks: large-kernel attention as the token mixer and a conv MLP.
"""

import math

import torch
from torch import nn

from nowcast_pl.layers.dilated_conv import DilatedDepthwiseConv2d


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al., ECCV 2016): zero whole samples of a residual branch.

    Kept samples are scaled by ``1 / (1 - rate)`` so the expectation is unchanged; identity in eval mode
    or at rate 0. ``x`` is ``(B, ...)``; one Bernoulli draw per sample.
    """
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module wrapper of :func:`drop_path` with a fixed ``rate`` in [0, 1)."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop-path rate must be in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4g}"


class LargeKernelAttention(nn.Module):
    """Gated large-kernel attention, receptive field 21 (``AttentionModule``).

    Depthwise 5x5 -> depthwise 7x7 with dilation 3 -> 1x1 to ``2 * dim`` split into (f, g);
    output ``sigmoid(g) * f``. Shapes: ``(B, dim, h, w) -> (B, dim, h, w)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.local = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.dilated = DilatedDepthwiseConv2d(dim, 7, dilation=3, padding=9)
        self.to_gate = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.to_gate(self.dilated(self.local(x))).chunk(2, dim=1)
        return torch.sigmoid(g) * f


class GatedSpatialAttention(nn.Module):
    """1x1 -> GELU -> :class:`LargeKernelAttention` -> 1x1, plus its own shortcut (``SpatialAttention``).

    Shapes: ``(B, dim, h, w) -> (B, dim, h, w)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.GELU(), LargeKernelAttention(dim),
                                  nn.Conv2d(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MixMlp(nn.Module):
    """Conv MLP: 1x1 to ``hidden`` -> depthwise 3x3 -> GELU -> 1x1 back to ``dim``.

    Shapes: ``(B, dim, h, w) -> (B, dim, h, w)``.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.GELU(),
            nn.Conv2d(hidden, dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class GSTABlock(nn.Module):
    """One gSTA block (``GASubBlock``): two pre-norm residual branches with layer scale and drop-path.

    ``x <- x + drop_path(ls1 * attn(BN(x)))``; ``x <- x + drop_path(ls2 * mlp(BN(x)))``.
    Every conv inside is initialised N(0, sqrt(2 / fan_out)), ``fan_out = k * k * out / groups``, with zero
    bias; BatchNorm keeps weight 1 and bias 0.

    Args:
        dim: channels.
        mlp_ratio: MLP hidden width is ``int(dim * mlp_ratio)``.
        drop_path: stochastic-depth rate of both branches, in [0, 1).
        layer_scale_init: initial value of the per-channel layer-scale vectors.

    Shapes: ``(B, dim, h, w) -> (B, dim, h, w)``.
    """

    def __init__(self, dim: int, *, mlp_ratio: float = 8.0, drop_path: float = 0.0,
                 layer_scale_init: float = 1e-2) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = GatedSpatialAttention(dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = MixMlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        self.layer_scale1 = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.layer_scale2 = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.apply(_init_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale1[:, None, None] * self.attn(self.norm1(x)))
        return x + self.drop_path(self.layer_scale2[:, None, None] * self.mlp(self.norm2(x)))


def _init_conv(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def drop_path_rates(depth: int, drop_path: float) -> list[float]:
    """Per-block stochastic-depth rates of the gSTA translator, as in SimVP-v2/OpenSTL.

    Blocks ``0 .. depth-2`` take ``linspace(1e-2, drop_path, depth)[i]``; the last block takes
    ``drop_path`` itself (the linspace end point). Note that even at ``drop_path = 0`` the first blocks get
    small non-zero rates (0.01 decreasing towards 0) during training; STLDM trains with exactly this.
    """
    rates = torch.linspace(1e-2, drop_path, depth, device="cpu").tolist()
    return rates[:-1] + [drop_path]


class GSTATranslator(nn.Module):
    """Plain stack of ``depth`` gSTA blocks with 1x1 width changes (``MidMetaNet`` with ``channel_out``).

    Block 0 runs at ``channels_in`` and is followed by a 1x1 conv to ``hidden``; blocks 1..depth-2 run at
    ``hidden``; the last runs at ``hidden`` and is followed by a 1x1 conv to ``channels_out``. A 1x1 conv is
    only present where the widths differ; these 1x1 convs keep PyTorch's default init. Stochastic depth
    follows :func:`drop_path_rates` faithfully (including its non-zero rates at ``drop_path = 0``).

    Args:
        channels_in: stacked input width, e.g. ``T_in * C'`` (STLDM HKO: 5 * 32 = 160).
        hidden: block width (``hid_T``; STLDM: 512).
        channels_out: stacked output width (STLDM HKO: 2 * 20 * 32 = 1280 for mean and log-variance).
        depth: number of blocks (``N_T``, >= 2).
        mlp_ratio: MLP expansion of every block.
        drop_path: stochastic-depth rate of the last block, in [0, 1).

    Shapes: ``(B, channels_in, h, w) -> (B, channels_out, h, w)``.
    """

    def __init__(self, channels_in: int, hidden: int, channels_out: int, depth: int, *,
                 mlp_ratio: float = 8.0, drop_path: float = 0.0) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
        widths = [(channels_in, hidden)] + [(hidden, hidden)] * (depth - 2) + [(hidden, channels_out)]
        self.stages = nn.ModuleList(
            self._stage(c_in, c_out, mlp_ratio=mlp_ratio, drop_path=rate)
            for (c_in, c_out), rate in zip(widths, drop_path_rates(depth, drop_path), strict=True)
        )

    @staticmethod
    def _stage(c_in: int, c_out: int, *, mlp_ratio: float, drop_path: float) -> nn.Sequential:
        block = GSTABlock(c_in, mlp_ratio=mlp_ratio, drop_path=drop_path)
        if c_in == c_out:
            return nn.Sequential(block)
        return nn.Sequential(block, nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x
