"""``NowcastTask``: the LightningModule every nowcasting model subclasses.

A subclass builds its networks in ``__init__`` and implements:

* :meth:`NowcastTask.training_loss` — a batch → a dict of losses with the optimised one under ``"loss"``;
* deterministic models: :meth:`NowcastTask.forecast` — observed frames → forecast frames in [0, 1];
* stochastic models (``stochastic = True``): :meth:`NowcastTask.forecast_rows` — one independent member per
  batch row, all randomness of row ``i`` drawn from ``generators[i]``.

Everything else is shared: ensembles (:meth:`NowcastTask.sample_members`, reproducible per window and member),
optimiser parameter groups and schedule, EMA weights for evaluation, validation/test metrics in the paper
protocol chosen by name, and TensorBoard logging (losses, scores, per-lead-time curves, radar panels).
Files (metrics JSON, panel PNG, forecast store) are written by the callbacks in :mod:`nowcast_pl.callbacks`.

Evaluation settings (:attr:`NowcastTask.runtime_settings`, which subclasses extend with theirs, e.g. a
diffusion task's sampler) are run-time choices, not architecture: they are
not saved as hyper-parameters, so a checkpoint never overrides them and ``nowcast test --ckpt_path X
--model.init_args.eval_members 10`` does what it says.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from nowcast_pl.diffusion.noise import member_generators
from nowcast_pl.metrics import build_metrics, flatten_scores
from nowcast_pl.tasks.ema import ExponentialMovingAverage, shadow_name
from nowcast_pl.tasks.optim import build_param_groups, warmup_cosine
from nowcast_pl.viz import forecast_panel, lead_time_curves, run_figures

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
        eval_members: members per window in validation/test (run-time). Scores pool all members (as STLDM
            pools its 10); with more than one, the ensemble mean is also scored (keys ``ens_mean/...``).
            Deterministic models are evaluated once.
        predict_members: members per window written by ``predict`` (run-time).
        member_chunk: members sampled together per window in one batch (run-time; bounds memory).
        sampling_seed: seed of the ensembles (run-time): member n of window w is drawn from a generator
            seeded by (sampling_seed, w, n), whatever the batch size, chunking or number of devices.
        val_metrics_every_n_epochs: forecast-based validation metrics every N epochs during ``fit`` (the
            loss is logged every epoch); ``nowcast validate`` always scores.
        panel_every_n_val_steps: log an image panel every N validation/test batches (0 disables).
        panel_leads: 1-based lead indices shown in panels.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay (never on biases, norms and layer scales).
        betas: AdamW betas.
        lr_multipliers: sub-module name → factor on ``lr`` (e.g. ``{"vae": 0.1}``).
        frozen_modules: sub-modules that are not trained (staged training); they stay in eval mode.
        warmup_steps: linear warm-up steps from ``lr * warmup_start_factor``.
        warmup_start_factor: learning-rate factor at step 0.
        schedule: ``"cosine"`` decays to ``min_lr`` at step ``schedule_steps``; ``"constant"`` keeps ``lr``.
        schedule_steps: length of the cosine schedule in optimiser steps; None uses the trainer's estimate
            (``max_epochs``/``max_steps``). Fix it when a run will be extended.
        min_lr: final learning rate of the cosine schedule.
        gradient_clip_norm: clip the global gradient norm to this value (unless the trainer's
            ``gradient_clip_val`` is set, which wins).
        ema_decay: EMA decay of the networks' weights; 0 disables EMA. When enabled, validation, test and
            predict use the EMA weights.
        ema_every_n_steps: update the EMA every N optimiser steps.
        ema_start_step: the EMA copies the weights until this optimiser step, then averages.
    """

    trainable = True
    stochastic = False
    accepts_row_noise = False
    """Whether :meth:`forecast_rows` draws all its randomness through
    :func:`~nowcast_pl.diffusion.noise.randn_like_rows`, so a caller may pass
    :data:`~nowcast_pl.diffusion.noise.RowNoise` sources in place of generators (tiled forecasts need it)."""
    runtime_settings: tuple[str, ...] = (
        "eval_members", "predict_members", "member_chunk", "sampling_seed", "val_metrics_every_n_epochs",
        "panel_every_n_val_steps", "panel_leads",
    )
    """Init arguments that are run-time choices, never saved in (nor restored from) a checkpoint. A subclass
    adds its own: ``runtime_settings = Parent.runtime_settings + ("its_setting",)``."""

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
        member_chunk: int = 8,
        sampling_seed: int = 0,
        val_metrics_every_n_epochs: int = 1,
        panel_every_n_val_steps: int = 50,
        panel_leads: list[int] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        lr_multipliers: dict[str, float] | None = None,
        frozen_modules: list[str] | None = None,
        warmup_steps: int = 0,
        warmup_start_factor: float = 0.1,
        schedule: Literal["cosine", "constant"] = "cosine",
        schedule_steps: int | None = None,
        min_lr: float = 0.0,
        gradient_clip_norm: float | None = None,
        ema_decay: float = 0.0,
        ema_every_n_steps: int = 1,
        ema_start_step: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(self.runtime_settings))
        for name, value in (("eval_members", eval_members), ("predict_members", predict_members),
                            ("member_chunk", member_chunk), ("val_metrics_every_n_epochs",
                                                             val_metrics_every_n_epochs)):
            if value < 1:
                raise ValueError(f"model.init_args.{name} must be >= 1, got {value}")
        self.in_frames, self.out_frames = in_frames, out_frames
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.eval_members, self.predict_members, self.member_chunk = eval_members, predict_members, member_chunk
        self.sampling_seed = sampling_seed
        self.val_metrics_every_n_epochs = val_metrics_every_n_epochs
        self.panel_every_n_val_steps = panel_every_n_val_steps
        self.panel_leads = panel_leads or sorted({1, max(1, out_frames // 2), out_frames})
        lo, hi = self.value_range
        scale, offset = (hi - lo, lo) if evaluation_scale is None else (float(evaluation_scale), 0.0)
        self.register_buffer("_eval_affine", torch.tensor([scale, offset]), persistent=False)
        unit = (units if evaluation_scale is None else "") if threshold_unit is None else threshold_unit
        self._threshold_unit = unit
        metric_kwargs = dict(thresholds=list(thresholds or []), lead_times=out_frames, unit=unit,
                             data_range=scale, lpips_required=lpips_required)
        members = self.effective_members(eval_members)
        self.val_metrics = build_metrics(protocol, members=members, **metric_kwargs)
        self.test_metrics = build_metrics(protocol, members=members, **metric_kwargs)
        self.val_mean_metrics = build_metrics(protocol, **metric_kwargs) if members > 1 else None
        self.test_mean_metrics = build_metrics(protocol, **metric_kwargs) if members > 1 else None
        self.ema: ExponentialMovingAverage | None = None
        self._ema_in_use = False
        self.test_scores: dict[str, float] = {}

    # ----- what a model provides -------------------------------------------------------------------------

    def forecast(self, inputs: Tensor) -> Tensor:
        """Deterministic forecast: (B, T_in, 1, H, W) in [0, 1] → (B, T_out, 1, H, W), about [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} must implement forecast()")

    def forecast_rows(self, inputs: Tensor, generators: list[torch.Generator]) -> Tensor:
        """Stochastic forecast, one member per row: (R, T_in, 1, H, W) → (R, T_out, 1, H, W).

        All randomness of row ``i`` must come from ``generators[i]`` (CPU generators), so that a member does
        not depend on which other rows share its batch.
        """
        raise NotImplementedError(f"{type(self).__name__} is stochastic and must implement forecast_rows()")

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        """Losses for one batch; the optimised total under ``"loss"``."""
        raise NotImplementedError(f"{type(self).__name__} must implement training_loss()")

    # ----- ensembles -----------------------------------------------------------------------------------------

    def sample_members(self, inputs: Tensor, members: int, generator: torch.Generator | None = None, *,
               windows: Tensor | None = None) -> Tensor:
        """``members`` forecasts per window: (B, T_in, 1, H, W) → (B, N, T_out, 1, H, W) in [0, 1].

        Member n of window w is drawn from a generator seeded by (seed, w, n), where seed is
        ``sampling_seed``, or drawn from ``generator`` when one is given, and w is ``windows[b]`` (the
        dataset's window index; default 0..B-1). Members are folded into the batch ``member_chunk`` at a time.
        Deterministic models forecast once and repeat it (a view, no recomputation).
        """
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        if not self.stochastic:
            return self.forecast(inputs).clamp(0.0, 1.0)[:, None].expand(-1, members, -1, -1, -1, -1)
        batch = inputs.shape[0]
        seed = self.sampling_seed if generator is None else int(torch.randint(0, 2**62, (1,), generator=generator))
        window_ids = list(range(batch)) if windows is None else [int(w) for w in windows]
        chunks = []
        for first in range(0, members, self.member_chunk):
            chunk = list(range(first, min(members, first + self.member_chunk)))
            generators = member_generators(seed, [w for w in window_ids for _ in chunk],
                                           [n for _ in window_ids for n in chunk])
            rows = inputs.repeat_interleave(len(chunk), dim=0)
            chunks.append(self.forecast_rows(rows, generators).unflatten(0, (batch, len(chunk))))
        return torch.cat(chunks, dim=1).clamp(0.0, 1.0)

    @property
    def noise_stride(self) -> int:
        """Frame pixels per pixel of the noise a stochastic forecast draws (1; a latent model's downsampling).
        Tiles of a tiled forecast start on multiples of it, so they share one noise grid."""
        return 1

    def effective_members(self, members: int) -> int:
        """Members worth computing: ``members`` for stochastic models, 1 for deterministic ones."""
        return members if self.stochastic else 1

    # ----- set-up, optimisation and EMA ----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        # Metric states are plain tensors, not buffers. On CPU, ddp_spawn hands the module to its processes
        # through shared memory and Lightning un-shares only parameters and buffers, so every rank would add
        # into one state and the synced sums would count each window twice. Resetting gives each process
        # its own states.
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()

    def configure_model(self) -> None:
        for name in self.hparams.frozen_modules or []:
            self._submodule(name).requires_grad_(False)
        if self.hparams.ema_decay > 0 and self.ema is None:
            self.ema = ExponentialMovingAverage(self.ema_tensors(), decay=self.hparams.ema_decay)

    def _submodule(self, name: str) -> torch.nn.Module:
        try:
            return self.get_submodule(name)
        except AttributeError:
            children = sorted(n for n, _ in self.named_children())
            raise ValueError(f"model.init_args.frozen_modules: {type(self).__name__} has no sub-module {name!r}; "
                             f"top-level modules: {children}") from None

    def ema_tensors(self) -> list[tuple[str, Tensor]]:
        """(name, tensor) of every parameter and buffer of the networks (not metrics, not the EMA itself)."""
        skip = (Metric, MetricCollection, ExponentialMovingAverage)
        tensors = []
        for child_name, child in self.named_children():
            if isinstance(child, skip):
                continue
            tensors += [(f"{child_name}.{n}", t) for n, t in child.named_parameters()]
            tensors += [(f"{child_name}.{n}", b) for n, b in child.named_buffers()]
        return tensors

    def param_groups(self) -> list[dict]:
        """AdamW parameter groups: per-module learning rates, no decay on biases/norms/layer scales,
        frozen modules left out (see :func:`nowcast_pl.tasks.optim.build_param_groups`)."""
        hp = self.hparams
        return build_param_groups(self.named_parameters(), lr=hp.lr, weight_decay=hp.weight_decay,
                                  lr_multipliers=hp.lr_multipliers)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.param_groups(), lr=hp.lr, betas=tuple(hp.betas),
                                      weight_decay=hp.weight_decay)
        if hp.schedule_steps or not self._trainer:
            total = max(1, hp.schedule_steps or 1)
        else:
            # Asked for at the first decaying step, not now: the estimate sets up the training data, and data set
            # up before a checkpoint is restored would start a resumed epoch from its first batch.
            trainer = self.trainer
            total = lambda: max(1, int(trainer.estimated_stepping_batches))  # noqa: E731
        schedule = warmup_cosine(hp.warmup_steps, hp.warmup_start_factor, total, hp.min_lr / hp.lr,
                                 cosine=hp.schedule == "cosine")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if gradient_clip_val is None and self.hparams.gradient_clip_norm:
            gradient_clip_val, gradient_clip_algorithm = self.hparams.gradient_clip_norm, "norm"
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_fit_start(self) -> None:
        if not self.trainable:
            raise ValueError(
                f"{type(self).__name__} has nothing to fit; run `nowcast validate` or `nowcast test` with it"
            )

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        for name in self.hparams.frozen_modules or []:
            self._submodule(name).eval()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        losses = self.training_loss(batch)
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=True,
                      batch_size=batch["inputs"].shape[0])
        return losses["loss"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then the EMA update: both are done before any callback sees the batch end, so
        a checkpoint written in ``on_train_batch_end`` (every N steps, preemption) holds the updated EMA."""
        super().optimizer_step(*args, **kwargs)
        step = self.trainer.global_step + 1  # the trainer counts this step once the hook returns
        if self.ema is not None and step % self.hparams.ema_every_n_steps == 0:
            self.ema.update(self.ema_tensors(), decay=0.0 if step <= self.hparams.ema_start_step else None)

    def _use_ema(self, use: bool) -> None:
        if self.ema is not None and use != self._ema_in_use:
            self.ema.swap(self.ema_tensors())
            self._ema_in_use = use

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints hold the trained weights under their names and the EMA under ``ema.*``, always."""
        if self.ema is not None and self._ema_in_use:
            state = checkpoint["state_dict"]
            for name in self.ema.names:
                shadow = f"ema.{shadow_name(name)}"
                state[name], state[shadow] = state[shadow], state[name]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        has_ema = any(key.startswith("ema.") for key in state)
        if self.ema is not None and not has_ema:
            warnings.warn("the checkpoint has no EMA weights; the EMA starts from its weights", stacklevel=2)
            for name in self.ema.names:
                state[f"ema.{shadow_name(name)}"] = state[name].clone()
        elif self.ema is None and has_ema:
            for key in [k for k in state if k.startswith("ema.")]:
                del state[key]

    # ----- evaluation ----------------------------------------------------------------------------------------

    def to_evaluation_units(self, frames: Tensor) -> Tensor:
        """[0, 1] frames → the evaluation value space (physical units or the paper's pixel scale), in float64
        for float64 input and float32 otherwise (scores are computed at the precision of their inputs)."""
        scale, offset = self._eval_affine
        return frames.to(torch.promote_types(frames.dtype, torch.float32)) * scale + offset

    def _metrics_due(self) -> bool:
        if self.trainer.state.fn == TrainerFn.VALIDATING or self.trainer.sanity_checking:
            return True
        return (self.current_epoch + 1) % self.val_metrics_every_n_epochs == 0

    def on_validation_start(self) -> None:
        self._use_ema(True)

    def on_validation_end(self) -> None:
        self._use_ema(False)

    def on_test_start(self) -> None:
        self._use_ema(True)

    def on_test_end(self) -> None:
        self._use_ema(False)

    def on_predict_start(self) -> None:
        self._use_ema(True)

    def on_predict_end(self) -> None:
        self._use_ema(False)

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor] | None:
        if self.trainable:
            losses = self.training_loss(batch)
            # A batch without any valid target pixel has a masked loss of 0: weighted by 0 it stays out of the
            # epoch mean, which is NaN (not 0) when no batch has a valid pixel.
            mask = batch.get("target_mask")
            weight = batch["inputs"].shape[0] if mask is None or bool(mask.any()) else 0
            self.log_dict({f"val/{k}": v for k, v in losses.items()}, sync_dist=True, batch_size=weight)
        if self._metrics_due():
            return self._evaluate_batch(batch, batch_idx, "val")
        return None

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate_batch(batch, batch_idx, "test")

    def _evaluate_batch(self, batch: Batch, batch_idx: int, stage: str) -> dict[str, Tensor]:
        members = self.effective_members(self.eval_members)
        forecast = self.sample_members(batch["inputs"], members, windows=batch["window"])
        targets, mask = self.to_evaluation_units(batch["targets"]), batch["target_mask"]
        getattr(self, f"{stage}_metrics").update(self.to_evaluation_units(forecast), targets, mask)
        mean_metrics = getattr(self, f"{stage}_mean_metrics")
        if mean_metrics is not None:
            mean_metrics.update(self.to_evaluation_units(forecast.mean(dim=1)), targets, mask)
        every = self.panel_every_n_val_steps
        if every and batch_idx % every == 0 and self.global_rank == 0:
            self._log_panel(batch, forecast, stage, batch_idx)
        return {"forecast": forecast}

    def on_validation_epoch_end(self) -> None:
        if self._metrics_due():
            self._log_scores("val")

    def on_test_epoch_end(self) -> None:
        self.test_scores = self._log_scores("test")

    def _log_scores(self, stage: str) -> dict[str, float]:
        scores = _compute_and_reset(getattr(self, f"{stage}_metrics"))
        mean_metrics = getattr(self, f"{stage}_mean_metrics")
        if mean_metrics is not None:
            scores |= {f"ens_mean/{k}": v for k, v in _compute_and_reset(mean_metrics).items()}
        summary = {f"{stage}/{k}": v for k, v in scores.items() if _is_summary_key(k) and math.isfinite(v)}
        self.log_dict(summary, sync_dist=False)
        self._log_curves(scores, stage)
        return scores

    # ----- figures -------------------------------------------------------------------------------------------

    def panel_figure(self, batch: Batch, forecast: Tensor) -> Figure:
        """Radar panel of the first window of a batch: inputs, truth and member 0, in physical units."""
        lo, hi = self.value_range
        physical = [self.trainer.datamodule.to_physical(x[0, :, 0].float().cpu().numpy())
                    for x in (batch["inputs"], batch["targets"], forecast[:, 0])]
        return forecast_panel(*physical, leads=self.panel_leads, units=self.hparams.units,
                              time_step_minutes=self.hparams.time_step_minutes, vmin=lo + 0.05 * (hi - lo), vmax=hi)

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
        figures = run_figures(scores, thresholds=self.hparams.thresholds or [], unit=self._threshold_unit,
                              out_frames=self.out_frames, time_step_minutes=self.hparams.time_step_minutes)
        for name, fig in figures.items():
            experiment.add_figure(f"{stage}/{name}", fig, global_step=self.global_step)

    def _log_panel(self, batch: Batch, forecast: Tensor, stage: str, batch_idx: int) -> None:
        experiment = self._experiment()
        if experiment is not None:
            experiment.add_figure(f"{stage}/panel_{batch_idx}", self.panel_figure(batch, forecast),
                                  global_step=self.global_step)

    # ----- prediction ----------------------------------------------------------------------------------------

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        members = self.effective_members(self.predict_members)
        forecast = self.sample_members(batch["inputs"], members, windows=batch["window"])
        return {"forecast": forecast, "init_time": batch["init_time"], "window": batch["window"]}


def _compute_and_reset(metrics: MetricCollection) -> dict[str, float]:
    scores = {k: float(v) for k, v in flatten_scores(metrics.compute()).items()}
    metrics.reset()
    return scores


def _is_summary_key(key: str) -> bool:
    """Scalar scores worth a TensorBoard series: not per lead time, not a point of a curve or histogram."""
    return not any(part in key for part in ("/lead_", "/bin_", "/p_"))


def _per_lead_curves(scores: dict[str, float], score: str, out_frames: int) -> dict[str, np.ndarray]:
    curves: dict[str, np.ndarray] = {}
    for key in scores:
        if key.startswith(f"{score}@") and key.endswith("/lead_01"):
            label = key[len(score) + 1 : -len("/lead_01")]
            values = [scores.get(f"{score}@{label}/lead_{t:02d}", math.nan) for t in range(1, out_frames + 1)]
            curves[label] = np.asarray(values)
    return curves

