"""Reusable network layers shared by the SimVP, RainDiff and STLDM models."""

from nowcast_pl.layers.conv import ConvNormAct, SpatialDecoder, SpatialEncoder, num_downsamplings
from nowcast_pl.layers.gsta import (
    DropPath,
    GatedSpatialAttention,
    GSTABlock,
    GSTATranslator,
    LargeKernelAttention,
    MixMlp,
)
from nowcast_pl.layers.inception import GroupedInceptionBlock, IncepUTranslator

__all__ = [
    "ConvNormAct",
    "DropPath",
    "GSTABlock",
    "GSTATranslator",
    "GatedSpatialAttention",
    "GroupedInceptionBlock",
    "IncepUTranslator",
    "LargeKernelAttention",
    "MixMlp",
    "SpatialDecoder",
    "SpatialEncoder",
    "num_downsamplings",
]
