"""RainDiff (arXiv:2510.14962) and its DiffCast ablation: network, task and official-weight converter."""

from nowcast_pl.models.raindiff.convert import (
    MODELS,
    convert_state_dict,
    export_official_names,
    load_official_state_dict,
)
from nowcast_pl.models.raindiff.network import RainDiffNet
from nowcast_pl.models.raindiff.task import RainDiffTask
from nowcast_pl.models.raindiff.unet import RainDiffUNet

__all__ = [
    "MODELS",
    "RainDiffNet",
    "RainDiffTask",
    "RainDiffUNet",
    "convert_state_dict",
    "export_official_names",
    "load_official_state_dict",
]
