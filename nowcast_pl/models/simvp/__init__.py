"""SimVP (IncepU or gSTA translator, direct or iterative) and its task."""

from nowcast_pl.models.simvp.network import SimVP
from nowcast_pl.models.simvp.task import SimVPTask

__all__ = ["SimVP", "SimVPTask"]
