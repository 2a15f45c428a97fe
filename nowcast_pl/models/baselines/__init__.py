"""The non-learned baselines: Eulerian persistence, Lagrangian extrapolation and STEPS ensembles (pysteps)."""

from nowcast_pl.models.baselines.extrapolation import ExtrapolationTask
from nowcast_pl.models.baselines.persistence import PersistenceTask
from nowcast_pl.models.baselines.steps import StepsTask

__all__ = ["ExtrapolationTask", "PersistenceTask", "StepsTask"]
