"""Eulerian persistence: the last observed frame, repeated for every lead time."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from nowcast_pl.tasks.base import Batch, NowcastTask


class PersistenceTask(NowcastTask):
    """The no-skill reference every nowcast must beat; it has no parameters and nothing to train.

    Args:
        **kwargs: :class:`NowcastTask` arguments (frames, thresholds, protocol ...).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def forecast(self, inputs: Tensor) -> Tensor:
        """(B, T_in, C, H, W) → (B, T_out, C, H, W): the last input frame at every lead time."""
        return inputs[:, -1:].expand(-1, self.out_frames, -1, -1, -1)

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        raise RuntimeError(
            "PersistenceTask has no parameters to fit; run `nowcast validate` or `nowcast test` with it"
        )

    def configure_optimizers(self) -> None:
        return None

    def on_fit_start(self) -> None:
        self.training_loss({})

    def forward(self, inputs: Tensor) -> Tensor:
        return self.forecast(inputs)

