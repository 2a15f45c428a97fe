"""The task machinery every model shares: the :class:`NowcastTask` contract and :class:`DiffusionTask`.

Each model's own task lives in its folder (``nowcast_pl.models.<name>.task``); this package imports none of
them, because the base knows no subclass.
"""

from nowcast_pl.tasks.base import NowcastTask
from nowcast_pl.tasks.diffusion import DiffusionTask

__all__ = ["DiffusionTask", "NowcastTask"]
