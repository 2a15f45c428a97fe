"""Network blocks used by more than one model; a block only one model uses lives in that model's folder."""

from nowcast_pl.layers.conv import ConvNormAct, SpatialDecoder, SpatialEncoder, num_downsamplings
from nowcast_pl.layers.gsta import (
    DropPath,
    GatedSpatialAttention,
    GSTABlock,
    GSTATranslator,
    LargeKernelAttention,
    MixMlp,
)

__all__ = [
    "ConvNormAct",
    "DropPath",
    "GSTABlock",
    "GSTATranslator",
    "GatedSpatialAttention",
    "LargeKernelAttention",
    "MixMlp",
    "SpatialDecoder",
    "SpatialEncoder",
    "num_downsamplings",
]
