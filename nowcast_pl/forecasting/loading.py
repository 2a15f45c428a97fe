"""``load_forecaster``: a trained task from a checkpoint or run folder, ready to forecast, with its frame recipe."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

import torch

from nowcast_pl.checkpoints import CheckpointError, read_checkpoint
from nowcast_pl.data.preparation import STATE_KEY, FramePreparation
from nowcast_pl.data.store import RadarStore
from nowcast_pl.models.moved import current_class_path
from nowcast_pl.tasks.base import NowcastTask
from nowcast_pl.tasks.distillation import RECORD


def load_forecaster(source: str | Path, *, device: str | torch.device | None = None,
                    task_class: type[NowcastTask] | None = None, **runtime_settings: Any) -> NowcastTask:
    """The task saved in a checkpoint, in eval mode with its EMA weights (if any), on ``device``.

    Args:
        source: a ``.ckpt`` file or a run folder (its ``checkpoints/last.ckpt``).
        device: where to run it (default CPU).
        task_class: the task's class, for a checkpoint that does not name it (one written without
            ``nowcast fit``, whose LightningCLI records ``hyper_parameters._class_path``).
        **runtime_settings: run-time init arguments of the task (e.g. ``sampler="dpmpp_2m"``,
            ``sampling_steps=10``), as ``--model.init_args.*`` gives them to ``nowcast test``. A distilled
            student samples by default with DDIM at the step count it was distilled to.

    Returns:
        The task; its ``frame_preparation`` attribute holds the :class:`FramePreparation` the checkpoint
        records (or that its data settings and still-present store give), None when neither exists.

    Raises:
        CheckpointError: for a missing or unreadable file, or a checkpoint that does not name its task class.
    """
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise CheckpointError(f"{source} is a folder without checkpoints/last.ckpt; give a run folder of "
                                  "nowcast fit or a .ckpt file")
    checkpoint = read_checkpoint(path)
    saved = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    moved = {}
    if task_class is None:
        if not saved:
            raise CheckpointError(f"{path} does not record its task class (hyper_parameters._class_path, written by "
                                  "nowcast fit); pass task_class=<the task class>")
        class_path = current_class_path(saved)
        module, _, name = class_path.rpartition(".")
        task_class = getattr(importlib.import_module(module), name)
        moved = {"_class_path": class_path} if class_path != saved else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*the checkpoint has no EMA weights.*")
        task = task_class.load_from_checkpoint(path, map_location="cpu", **moved,
                                               **(student_sampling(checkpoint) | runtime_settings))
    task.eval()
    task.on_predict_start()  # EMA weights, as `nowcast predict` uses
    task.frame_preparation = recorded_preparation(checkpoint, task)
    return task.to(device or "cpu")


def student_sampling(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The sampler a distilled checkpoint was trained for (DDIM at the steps it reached, guidance folded in), or
    nothing for any other checkpoint."""
    record = checkpoint.get(RECORD)
    if record is None:
        return {}
    return {"sampler": "ddim", "sampling_steps": int(record["reached_steps"]), "guidance_scale": 0.0}


def recorded_preparation(checkpoint: dict[str, Any], task: NowcastTask) -> FramePreparation | None:
    """The frame recipe of a checkpoint: its record, else rebuilt from its data settings and store, else None."""
    record = (checkpoint.get("RadarDataModule") or {}).get(STATE_KEY)
    if record is not None:
        return FramePreparation.from_dict(record)
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    store = data.get("store")
    if not store or not Path(store).exists():
        return None
    opened = RadarStore(store)
    size = data.get("frame_size")
    size = (size, size) if isinstance(size, int) else size
    return FramePreparation.of_data_module(
        opened.frame_shape, size, data.get("resize_method", "bilinear"), bool(data.get("antialias", False)),
        crop=None, value_range=task.value_range, units=task.hparams.get("units", ""),
        time_step_minutes=task.hparams.get("time_step_minutes", 5.0), pixel_size_m=opened.attrs.get("pixel_size_m"))

