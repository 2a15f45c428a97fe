"""Files written after ``nowcast test``: the scores as JSON and a radar panel of the first test window."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import matplotlib.pyplot as plt
from lightning.pytorch.callbacks import Callback


def _run_dir(trainer: pl.Trainer) -> Path:
    """The logger's folder (the run folder under the CLI), else ``default_root_dir``.

    ``trainer.log_dir`` is not used: it broadcasts from rank 0, which deadlocks when called on one rank.
    """
    logger_dir = getattr(trainer.logger, "log_dir", None)
    return Path(logger_dir or trainer.default_root_dir)


class TestMetricsWriter(Callback):
    """Write the task's test scores (``pl_module.test_scores``) to ``<run>/test_metrics.json``."""

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            folder = _run_dir(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "test_metrics.json").write_text(json.dumps(pl_module.test_scores, indent=1, sort_keys=True))


class TestPanelWriter(Callback):
    """Save the radar panel of the first test batch (inputs, truth, member 0) as ``<run>/test_panel.png``."""

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or not trainer.is_global_zero or not outputs:
            return
        folder = _run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        figure = pl_module.panel_figure(batch, outputs["forecast"])
        figure.savefig(folder / "test_panel.png", dpi=110)
        plt.close(figure)
