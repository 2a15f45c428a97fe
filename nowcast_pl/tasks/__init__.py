"""LightningModules ("tasks"): the shared base and one task per model."""

from nowcast_pl.tasks.base import NowcastTask
from nowcast_pl.tasks.diffusion import DiffusionTask
from nowcast_pl.tasks.persistence import PersistenceTask
from nowcast_pl.tasks.simvp import SimVPTask

__all__ = ["DiffusionTask", "NowcastTask", "PersistenceTask", "SimVPTask"]
