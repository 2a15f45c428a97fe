"""What ``nowcast report`` compares: trained runs, checkpoints, baseline configs and forecast stores.

A source turns a batch of the report's data module into an ensemble in physical units,
``(B, N, T_out, 1, H, W)`` float32. Every source sees the same windows (same store, split, grid and
``value_range``), so their scores are comparable:

* a run folder (``runs/demo``: its ``config.yaml`` and ``checkpoints/last.ckpt``) or a checkpoint file
  (the run's ``config.yaml`` is found next to its ``checkpoints/`` folder);
* a config YAML of a model with nothing to train (``configs/baselines/*.yaml``, persistence), read by
  :func:`nowcast_pl.config.read_config` with the report's data section in place of its own, so the CLI's links
  give it the report's frames, value range, units and time step;
* a forecast store written by ``nowcast predict`` (``forecast.zarr``), matched to the windows by init time.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nowcast_pl.config import ReadConfig, read_config
from nowcast_pl.data.forecast_store import open_forecast
from nowcast_pl.data.units import same_units
from nowcast_pl.models.moved import current_class_path
from nowcast_pl.tasks.base import NowcastTask


@dataclass(frozen=True)
class EvaluationSettings:
    """The protocol every source is scored with.

    Attributes:
        protocol: metric protocol name (:mod:`nowcast_pl.metrics.protocols`).
        thresholds: event thresholds in the store's units.
        members: ensemble members per window for stochastic sources (deterministic ones give one).
    """

    protocol: str
    thresholds: tuple[float, ...]
    members: int


class ModelSource:
    """A task (trained or not) sampled through :meth:`NowcastTask.sample`, seeded per window and member."""

    def __init__(self, name: str, task: NowcastTask, datamodule: Any, members: int) -> None:
        self.name, self.task, self.datamodule = name, task, datamodule
        self.members = task.effective_members(members)

    @torch.no_grad()
    def forecast(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        members = self.task.sample_members(batch["inputs"], self.members, windows=batch["window"])
        return self.datamodule.to_physical(members.float())

    def describe(self) -> str:
        """How the model forecasts: its sampler for a diffusion model (e.g. ``ddim, 4 steps, distilled``), else
        its class."""
        sampling = getattr(self.task, "sampling", None)
        if sampling is None:
            return type(self.task).__name__
        text = f"{sampling.sampler}, {sampling.sampling_steps} steps"
        if sampling.guidance_scale:
            text += f", guidance w={sampling.guidance_scale:g}"
        return text + (", distilled" if getattr(self.task, "distilled_record", None) else "")


class StoreSource:
    """Forecasts read from a ``nowcast predict`` store, selected by the windows' init times."""

    def __init__(self, name: str, path: Path, datamodule: Any, members: int) -> None:
        self.name, self.path = name, path
        forecast = open_forecast(path)["forecast"]
        expected = (datamodule.out_frames, *(datamodule.frame_size or datamodule.store.frame_shape))
        found = (forecast.sizes["lead_time"], forecast.sizes["y"], forecast.sizes["x"])
        if found != tuple(expected) or not same_units(str(forecast.attrs.get("units")), datamodule.units):
            raise ValueError(f"forecast store {path} has (lead_time, y, x) = {found} in "
                             f"{forecast.attrs.get('units')!r}; the report's data give {tuple(expected)} in "
                             f"{datamodule.units!r}: write it with the same data configuration")
        self.members = min(members, forecast.sizes["member"])
        self._forecast = forecast.isel(member=slice(0, self.members))
        times = forecast["init_time"].values.astype("datetime64[s]").astype(np.int64)
        self._row = {int(t): i for i, t in enumerate(times)}

    def describe(self) -> str:
        return f"forecast store {self.path.name}"

    def forecast(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        rows = []
        for init in batch["init_time"].tolist():
            if init not in self._row:
                raise ValueError(f"forecast store {self.path} has no forecast from {np.datetime64(init, 's')}; "
                                 "predict the report's split (data.splits.predict = the report's split)")
            rows.append(self._row[init])
        values = self._forecast.isel(init_time=rows).values
        if np.isnan(values).all(axis=(1, 2, 3, 4)).any():
            raise ValueError(f"forecast store {self.path} has windows that were never written (all NaN)")
        return torch.from_numpy(values.astype(np.float32))[:, :, :, None]


def load_source(name: str, path: str | Path, report: ReadConfig, settings: EvaluationSettings,
                runtime: Mapping[str, Any] | None = None) -> ModelSource | StoreSource:
    """The source at ``path`` (see the module docstring for what a path may be).

    Args:
        name: the source's name in the report.
        path: run folder, ``.ckpt``, model config ``.yaml`` or ``.zarr`` forecast store.
        report: the report's configuration, its data module built (:func:`nowcast_pl.config.read_config`).
        settings: the protocol every source is scored with.
        runtime: run-time settings of a trained model (its class's ``runtime_settings``, e.g. ``sampler`` and
            ``sampling_steps``) in place of its run config's; checked as ``nowcast test`` checks them.

    Raises:
        FileNotFoundError: if the path, or a run's config or checkpoint, does not exist.
        ValueError: if it is another kind of file, a trainable model without checkpoint, a model trained
            on other frames or another value range than the report's data, or ``runtime`` given for anything
            but a trained model, or naming a setting its class has not.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"report source {name}: {path} does not exist")
    config, checkpoint = (None, None) if path.suffix == ".zarr" else _config_and_checkpoint(name, path)
    if runtime and checkpoint is None:
        raise ValueError(f"report source {name}: run-time settings {sorted(runtime)} apply to a trained model; "
                         f"{path} is none")
    if path.suffix == ".zarr":
        return StoreSource(name, path, report.datamodule, settings.members)
    if checkpoint is None:
        task = _untrained_task(name, config, report, settings)
    else:
        task = _trained_task(name, config, checkpoint, settings, dict(runtime or {}))
    found = (task.in_frames, task.out_frames, tuple(task.value_range))
    datamodule = report.datamodule
    wanted = (datamodule.in_frames, datamodule.out_frames, tuple(datamodule.value_range))
    if found != wanted:
        raise ValueError(f"report source {name}: the model has (in_frames, out_frames, value_range) = {found}, the "
                         f"report's data {wanted}")
    task.eval()
    task.on_test_start()  # EMA weights, as `nowcast test` uses
    return ModelSource(name, task, datamodule, settings.members)


def _config_and_checkpoint(name: str, path: Path) -> tuple[Path, Path | None]:
    if path.is_dir():
        config, checkpoint = path / "config.yaml", path / "checkpoints" / "last.ckpt"
    elif path.suffix == ".ckpt":
        config = next((p for p in (path.parent.parent / "config.yaml", path.parent / "config.yaml") if p.exists()),
                      path.parent.parent / "config.yaml")
        checkpoint = path
    elif path.suffix in (".yaml", ".yml"):
        return path, None
    else:
        raise ValueError(f"report source {name}: {path} is not a run folder, .ckpt, .yaml config or .zarr store")
    for needed in (config, checkpoint):
        if not needed.exists():
            raise FileNotFoundError(f"report source {name}: {needed} does not exist (train the run first)")
    return config, checkpoint


def _scoring(settings: EvaluationSettings) -> dict[str, Any]:
    """Init arguments that make every source score with the report's protocol and log no panels."""
    return {"thresholds": list(settings.thresholds), "protocol": settings.protocol, "evaluation_scale": None,
            "threshold_unit": None, "panel_every_n_val_steps": 0, "lpips_required": False}


def _untrained_task(name: str, config: Path, report: ReadConfig, settings: EvaluationSettings) -> NowcastTask:
    """A model with nothing to train, built from its config with the report's data section in place of its own,
    so the CLI's links give it the report's frames, value range, units and time step."""
    overrides = ["--data", report.section("data")]
    overrides += [item for key, value in _scoring(settings).items()
                  for item in (f"--model.init_args.{key}", value if isinstance(value, str) else json.dumps(value))]
    class_path = read_config([config], overrides, build=()).config.model.class_path
    if _task_class(class_path).trainable:
        raise ValueError(f"report source {name}: {class_path.rsplit('.', 1)[-1]} must be trained; give its run "
                         "folder or checkpoint")
    return read_config([config], overrides).model


def _trained_task(name: str, config: Path, checkpoint: Path, settings: EvaluationSettings,
                  runtime: dict[str, Any]) -> NowcastTask:
    """The run's model from its checkpoint, with the run-time settings of its config (``runtime`` in place of
    some) and the report's scoring."""
    run, saved_class_path = _run_config(config)
    class_path, init_args = run.config.model.class_path, run.config.model.init_args
    accepted = _task_class(class_path).runtime_settings
    unknown = sorted(set(runtime) - set(accepted))
    if unknown:
        raise ValueError(f"report source {name}: {class_path.rsplit('.', 1)[-1]} has no run-time setting "
                         f"{unknown}; it has {sorted(accepted)}")
    runtime = {key: init_args[key] for key in accepted if key in init_args} | runtime
    # A run's checkpoint saves its config's class path as `_class_path`, and Lightning refuses to load one that
    # no longer imports: a run from before the model folders gets today's.
    moved = {"_class_path": class_path} if class_path != saved_class_path else {}
    return _task_class(class_path).load_from_checkpoint(checkpoint, map_location="cpu",
                                                        **(runtime | _scoring(settings) | moved))


def _run_config(path: Path) -> tuple[ReadConfig, str | None]:
    """A run folder's ``config.yaml`` read as ``nowcast`` reads it, and the model class path it names.

    The file is a complete dump written by ``nowcast`` (no includes); one written before the model folders
    names a class path that no longer imports (``nowcast_pl.tasks.SimVPTask``), replaced by today's first.
    """
    content = yaml.safe_load(path.read_text()) or {}
    saved = (content.get("model") or {}).get("class_path")
    if saved is not None and current_class_path(saved) != saved:
        content["model"]["class_path"] = current_class_path(saved)
        return read_config([yaml.safe_dump(content)], build=()), saved
    return read_config([path], build=()), saved


def _task_class(class_path: str) -> type[NowcastTask]:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)
