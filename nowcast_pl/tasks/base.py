"""``NowcastTask``: the LightningModule every nowcasting model subclasses.

A subclass builds its networks in ``__init__`` and implements two methods:

* :meth:`NowcastTask.forecast` — observed frames → forecast frames, both in [0, 1];
* :meth:`NowcastTask.training_loss` — a batch → a dict of losses with the optimised one under ``"loss"``.

Everything else is shared: optimiser and schedule, validation/test metrics in the paper protocol chosen by
name, TensorBoard logging (losses, scores per threshold, per-lead-time curves, radar image panels), a
metrics JSON after ``test``, and ``predict`` output for :class:`nowcast_pl.tasks.writer.ForecastWriter`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from nowcast_pl.metrics import build_metrics, flatten_scores
from nowcast_pl.viz import forecast_panel, lead_time_curves

Batch = dict[str, Tensor]


class NowcastTask(pl.LightningModule):
    """Shared training, evaluation and prediction logic.

    Subclasses without anything to train (baselines) set the class attribute ``trainable = False``.

    Args:
        in_frames: observed frames per sample (linked from ``data.in_frames``).
        out_frames: forecast frames per sample (linked from ``data.out_frames``).
        value_range: physical (lo, hi) that the data module maps to [0, 1] (linked from the data).
        units: physical units of the data, e.g. ``"dBZ"`` (linked from the data).
        time_step_minutes: minutes between frames (linked from the data), for plots.
        thresholds: event thresholds for CSI/POD/FAR/HSS, in evaluation units.
        protocol: evaluation protocol name (``raindiff``, ``diffcast``, ``stldm``, ``earthformer``, ``hko7``,
            ``pysteps``), see :mod:`nowcast_pl.metrics.protocols`.
        evaluation_scale: None to evaluate in physical units; otherwise forecasts in [0, 1] are multiplied
            by this paper "pixel scale" before scoring (e.g. 70 for RainDiff Shanghai, 90 for DiffCast).
        threshold_unit: label appended to threshold keys; default the data units when evaluating in
            physical units, none otherwise.
        lpips_required: fail instead of skipping LPIPS when its backbone weights are unavailable.
        eval_members: stochastic forecasts per sample in validation/test, all pooled into the scores (as
            STLDM pools its 10 members); deterministic models keep 1.
        predict_members: forecasts per sample written by ``predict``.
        val_metrics_every_n_epochs: run forecast-based validation metrics every N epochs (the loss is
            logged every epoch) — sampling-based models are expensive to validate.
        panel_every_n_val_steps: log an image panel every N validation/test batches (0 disables).
        panel_leads: 1-based lead indices shown in panels.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_steps: linear warm-up steps from ``lr * warmup_start_factor``.
        warmup_start_factor: learning-rate factor at step 0.
        schedule: ``"cosine"`` decays to ``min_lr`` at step ``schedule_steps``; ``"constant"`` keeps ``lr``.
        schedule_steps: length of the cosine schedule in optimiser steps; None uses the trainer's estimate
            (``max_epochs``/``max_steps``). Fix it when a run will be extended, so the schedule of the steps
            already taken does not change.
        min_lr: final learning rate of the cosine schedule.
    """

    def __init__(
        self,
        *,
        in_frames: int,
        out_frames: int,
        value_range: tuple[float, float] = (0.0, 1.0),
        units: str = "",
        time_step_minutes: float = 5.0,
        thresholds: list[float] | None = None,
        protocol: str = "raindiff",
        evaluation_scale: float | None = None,
        threshold_unit: str | None = None,
        lpips_required: bool = False,
        eval_members: int = 1,
        predict_members: int = 1,
        val_metrics_every_n_epochs: int = 1,
        panel_every_n_val_steps: int = 50,
        panel_leads: list[int] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.1,
        schedule: Literal["cosine", "constant"] = "cosine",
        schedule_steps: int | None = None,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.in_frames, self.out_frames = in_frames, out_frames
        self.value_range = (float(value_range[0]), float(value_range[1]))
        lo, hi = self.value_range
        scale, offset = (hi - lo, lo) if evaluation_scale is None else (float(evaluation_scale), 0.0)
        self.register_buffer("_eval_affine", torch.tensor([scale, offset]), persistent=False)
        unit = (units if evaluation_scale is None else "") if threshold_unit is None else threshold_unit
        metric_kwargs = dict(thresholds=list(thresholds or []), lead_times=out_frames, unit=unit,
                             data_range=scale, lpips_required=lpips_required)
        self.val_metrics = build_metrics(protocol, **metric_kwargs)
        self.test_metrics = build_metrics(protocol, **metric_kwargs)
        self.panel_leads = panel_leads or sorted({1, max(1, out_frames // 2), out_frames})

    trainable = True

    # ----- what a model provides -------------------------------------------------------------------------

    def forecast(self, inputs: Tensor) -> Tensor:
        """Forecast frames: (B, T_in, 1, H, W) in [0, 1] → (B, T_out, 1, H, W) in [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} must implement forecast()")

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        """Losses for one batch; the optimised total under ``"loss"``."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_loss()")

    # ----- training ------------------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        if not self.trainable:
            raise ValueError(
                f"{type(self).__name__} has nothing to fit; run `nowcast validate` or `nowcast test` with it"
            )

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        losses = self.training_loss(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=True,
                      batch_size=batch["inputs"].shape[0])
        return losses["loss"]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, betas=tuple(hp.betas),
                                      weight_decay=hp.weight_decay)
        total = hp.schedule_steps or (int(self.trainer.estimated_stepping_batches) if self._trainer else 1)
        schedule = _warmup_cosine(hp.warmup_steps, hp.warmup_start_factor, max(1, total), hp.min_lr / hp.lr,
                                  cosine=hp.schedule == "cosine")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----- evaluation ----------------------------------------------------------------------------------------

    def to_evaluation_units(self, frames: Tensor) -> Tensor:
        """[0, 1] frames → the evaluation value space (physical units or the paper's pixel scale)."""
        scale, offset = self._eval_affine
        return frames.float() * scale + offset

    def _metrics_due(self) -> bool:
        every = self.hparams.val_metrics_every_n_epochs
        return self.trainer.sanity_checking or (self.current_epoch + 1) % every == 0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        batch_size = batch["inputs"].shape[0]
        if self.trainable:
            losses = self.training_loss(batch)
            self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=batch_size)
        if self._metrics_due():
            self._evaluate_batch(batch, batch_idx, self.val_metrics, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate_batch(batch, batch_idx, self.test_metrics, "test")

    def _evaluate_batch(self, batch: Batch, batch_idx: int, metrics: Any, stage: str) -> None:
        targets = self.to_evaluation_units(batch["targets"])
        mask = batch["target_mask"]
        for _ in range(self.hparams.eval_members):
            forecast = self.forecast(batch["inputs"]).clamp(0.0, 1.0)
            metrics.update(self.to_evaluation_units(forecast), targets, mask)
        every = self.hparams.panel_every_n_val_steps
        if every and batch_idx % every == 0 and self.global_rank == 0:
            self._log_panel(batch, forecast, stage, batch_idx)

    def on_validation_epoch_end(self) -> None:
        if self._metrics_due():
            self._log_scores(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        scores = self._log_scores(self.test_metrics, "test")
        if self.global_rank == 0 and self.logger is not None and self.logger.log_dir:
            path = Path(self.logger.log_dir) / "test_metrics.json"
            path.write_text(json.dumps(scores, indent=1, sort_keys=True))

    def _log_scores(self, metrics: Any, stage: str) -> dict[str, float]:
        scores = {k: float(v) for k, v in flatten_scores(metrics.compute()).items()}
        metrics.reset()
        summary = {f"{stage}/{k}": v for k, v in scores.items() if "/lead_" not in k and math.isfinite(v)}
        self.log_dict(summary, sync_dist=False)
        self._log_curves(scores, stage)
        return scores

    # ----- TensorBoard figures -------------------------------------------------------------------------------

    def _experiment(self) -> Any | None:
        logger = self.logger
        experiment = getattr(logger, "experiment", None) if logger is not None else None
        return experiment if hasattr(experiment, "add_figure") else None

    def _log_curves(self, scores: dict[str, float], stage: str) -> None:
        experiment = self._experiment()
        if experiment is None or self.global_rank != 0:
            return
        for score in ("csi", "hss"):
            curves = _per_lead_curves(scores, score, self.out_frames)
            if curves:
                fig = lead_time_curves(curves, time_step_minutes=self.hparams.time_step_minutes, ylabel=score)
                experiment.add_figure(f"{stage}/{score}_by_lead", fig, global_step=self.global_step)

    def _log_panel(self, batch: Batch, forecast: Tensor, stage: str, batch_idx: int) -> None:
        experiment = self._experiment()
        if experiment is None:
            return
        lo, hi = self.value_range
        physical = [(x[0, :, 0].float().cpu().numpy() * (hi - lo) + lo)
                    for x in (batch["inputs"], batch["targets"], forecast)]
        fig = forecast_panel(*physical, leads=self.panel_leads, units=self.hparams.units,
                             time_step_minutes=self.hparams.time_step_minutes, vmin=lo + 0.05 * (hi - lo),
                             vmax=hi)
        if stage == "test" and batch_idx == 0 and self.logger.log_dir:
            fig.savefig(Path(self.logger.log_dir) / "test_panel.png", dpi=110)
        experiment.add_figure(f"{stage}/panel_{batch_idx}", fig, global_step=self.global_step)

    # ----- prediction ----------------------------------------------------------------------------------------

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        members = [self.forecast(batch["inputs"]).clamp(0.0, 1.0) for _ in range(self.hparams.predict_members)]
        return {"forecast": torch.stack(members, dim=1), "init_time": batch["init_time"],
                "window": batch["window"]}


def _warmup_cosine(warmup: int, start: float, total: int, floor: float, *, cosine: bool):
    """LR multiplier per step: linear warm-up from ``start`` to 1, then cosine decay to ``floor`` (or flat)."""

    def factor(step: int) -> float:
        if step < warmup:
            return start + (1.0 - start) * step / warmup
        if not cosine:
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _per_lead_curves(scores: dict[str, float], score: str, out_frames: int) -> dict[str, np.ndarray]:
    curves: dict[str, np.ndarray] = {}
    for key in scores:
        if key.startswith(f"{score}@") and key.endswith("/lead_01"):
            label = key[len(score) + 1 : -len("/lead_01")]
            values = [scores.get(f"{score}@{label}/lead_{t:02d}", math.nan) for t in range(1, out_frames + 1)]
            curves[label] = np.asarray(values)
    return curves
