"""Reading a checkpoint given to ``--ckpt_path`` safely, and checking that it fits the configured model.

Checkpoints are read only with torch's safe loader (``weights_only=True``: tensors and plain containers, no
code). A file that is empty, truncated, not a torch file, or a torch file that is not a Lightning checkpoint
(e.g. a bare state dict) is refused with one line naming the file and what is wrong.

Which settings build the model:

* A checkpoint written by ``nowcast fit`` (any checkpoint not marked as imported) must be of the configured
  model class, and its weights must fit the model the config builds; otherwise the error names both classes,
  or the saved settings that differ from the config (``model.init_args.dim is 8 in the config but 16 in the
  checkpoint``). The config's other settings (evaluation, optimiser) apply as given, unlike LightningCLI's
  default, which replaces every setting by the checkpoint's; run-time settings
  (``runtime_settings`` of the task class, e.g. the sampler of a diffusion task) are never saved.
* A checkpoint imported by ``nowcast-convert`` (it has ``nowcast_converted_from``) carries the architecture
  of the official weights, e.g. RainDiff's ``variant: released``; those settings replace the config's, so a
  paper config evaluates it as written.
"""

from __future__ import annotations

import importlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from nowcast_pl.models.moved import current_class_path

DATA_SETTINGS = ("in_frames", "out_frames", "value_range")
"""Model settings the CLI links from ``data.init_args`` (set there, not under ``model.init_args``)."""

IMPORTED = "nowcast_converted_from"
"""Key of the provenance record that ``nowcast-convert`` writes into the checkpoints it imports."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as given; the message is one line naming the file and the fix."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint, read with the safe loader (memory-mapped, on the CPU).

    Raises:
        CheckpointError: when the file is empty, truncated, not a torch file, holds objects the safe loader
            does not unpickle, or is a torch file without a Lightning ``state_dict``.
    """
    payload = load_torch_file(path)
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        keys = sorted(map(str, payload))[:6] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path} is a torch file but not a Lightning checkpoint (it holds {keys}, no 'state_dict'); "
            "pass a checkpoint written by nowcast fit, or convert official weights with nowcast-convert")
    return payload


def check_resumable(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse to resume ``fit`` from a checkpoint that holds weights only (no optimiser or loop state)."""
    if "optimizer_states" not in checkpoint or "loops" not in checkpoint:
        raise CheckpointError(f"{path} holds weights only (no optimiser or loop state), so fit cannot resume it; "
                              "evaluate it with nowcast test/validate/predict --ckpt_path")


def load_torch_file(path: str | Path) -> Any:
    """Whatever a torch file holds, read with ``weights_only=True``; one-line errors for unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist or is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); the run that wrote it was probably interrupted")
    zipped = zipfile.is_zipfile(path)  # torch >= 1.6 archives; older files are plain pickles
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as err:  # torch reports damage as UnpicklingError, RuntimeError, EOFError, KeyError, ...
        if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in str(err):
            raise CheckpointError(f"{path} holds Python objects other than tensors and plain containers; nowcast "
                                  "reads checkpoints only with torch's safe loader, so it cannot be used") from None
        damage = "a damaged torch archive" if zipped else "not a complete torch file"
        raise CheckpointError(f"{path} is {damage} ({type(err).__name__} while reading its {size} bytes): "
                              "truncated, corrupt or another kind of file; use another checkpoint") from None


def is_imported(checkpoint: dict[str, Any]) -> bool:
    """Whether ``nowcast-convert`` wrote the checkpoint (its settings describe official weights)."""
    return IMPORTED in checkpoint


def saved_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model settings saved in the checkpoint, without Lightning's private ``_class_path`` entries."""
    return {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}


def check_model_class(checkpoint: dict[str, Any], class_path: str, path: str | Path) -> None:
    """Refuse a checkpoint saved from another model class than ``class_path`` (the config's model)."""
    saved = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    if saved and _resolve(saved) != _resolve(class_path):
        raise CheckpointError(
            f"{path} holds a {saved.rsplit('.', 1)[-1]} ({saved}) but the config's model is "
            f"{class_path.rsplit('.', 1)[-1]} ({class_path}); use the config the checkpoint was trained with "
            "(<run>/config.yaml) or a checkpoint of the configured model")


def _resolve(class_path: str) -> object:
    """The class named by ``class_path`` (a path from before the model folders is mapped to today's), or the
    path itself when it does not import."""
    module, _, name = current_class_path(class_path).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return class_path


def check_weights_fit(model: nn.Module, checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose weights do not fit ``model``, naming the saved settings that differ.

    EMA copies (``ema.*``, handled by the task when it loads) and metric modules are not compared.
    """
    ours, theirs = _shapes(model, model.state_dict()), _shapes(model, checkpoint["state_dict"])
    if ours == theirs:
        return
    name = type(model).__name__
    configured = dict(getattr(model, "hparams", {}))
    differing = [f"{_option(k)} is {configured[k]!r} in the config but {v!r} in the checkpoint"
                 for k, v in saved_settings(checkpoint).items() if k in configured and not _same(v, configured[k])]
    if differing:
        raise CheckpointError(f"{path} does not fit the configured {name}: {'; '.join(differing)}; set them to "
                              "the checkpoint's values (or use the config it was trained with)")
    missing, unexpected = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
    shapes = sorted(k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k])
    raise CheckpointError(
        f"{path} does not fit the configured {name} (it saves no differing settings): missing {_listed(missing)}; "
        f"unexpected {_listed(unexpected)}; other shapes {_listed(shapes)}; use the config it was trained with")


def _option(setting: str) -> str:
    """The config key of a model setting."""
    return f"{'data' if setting in DATA_SETTINGS else 'model'}.init_args.{setting}"


def _shapes(model: nn.Module, state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Shapes of the network tensors of a state dict (no EMA copies, no metric states)."""
    metrics = tuple(f"{n}." for n, m in model.named_modules() if n and isinstance(m, Metric))
    return {k: tuple(v.shape) for k, v in state.items()
            if hasattr(v, "shape") and not k.startswith("ema.") and not k.startswith(metrics)}


def _same(saved: Any, configured: Any) -> bool:
    """Equal settings, with tuples and lists (YAML and Python spellings of one sequence) alike."""
    if isinstance(saved, (list, tuple)) and isinstance(configured, (list, tuple)):
        return len(saved) == len(configured) and all(map(_same, saved, configured))
    return saved == configured


def _listed(keys: list[str], limit: int = 4) -> str:
    return f"{len(keys)}" + (f" ({', '.join(keys[:limit])}{', ...' if len(keys) > limit else ''})" if keys else "")

