"""Eulerian persistence: the last observed frame, repeated for every lead time."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from nowcast_pl.tasks.base import NowcastTask


class PersistenceTask(NowcastTask):
    """The no-skill reference every nowcast must beat; it has no parameters and nothing to train.

    Args:
        **kwargs: :class:`NowcastTask` arguments (frames, thresholds, protocol ...).
    """

    trainable = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def forecast(self, inputs: Tensor) -> Tensor:
        """(B, T_in, C, H, W) → (B, T_out, C, H, W): the last input frame at every lead time."""
        return inputs[:, -1:].expand(-1, self.out_frames, -1, -1, -1)

    def configure_optimizers(self) -> None:
        return None

    def forward(self, inputs: Tensor) -> Tensor:
        return self.forecast(inputs)

