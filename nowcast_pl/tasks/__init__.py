"""LightningModules ("tasks"): the shared base and one task per model."""

from nowcast_pl.tasks.base import NowcastTask
from nowcast_pl.tasks.diffusion import DiffusionTask
from nowcast_pl.tasks.extrapolation import ExtrapolationTask
from nowcast_pl.tasks.persistence import PersistenceTask
from nowcast_pl.tasks.raindiff import RainDiffTask
from nowcast_pl.tasks.simvp import SimVPTask
from nowcast_pl.tasks.steps import StepsTask
from nowcast_pl.tasks.stldm import STLDMTask

__all__ = [
    "DiffusionTask",
    "ExtrapolationTask",
    "NowcastTask",
    "PersistenceTask",
    "RainDiffTask",
    "STLDMTask",
    "SimVPTask",
    "StepsTask",
]
