"""Import the official RainDiff / DiffCast weights into :class:`nowcast_pl.models.raindiff.network.RainDiffNet`.

:func:`convert_state_dict` translates names (:mod:`nowcast_pl.models.raindiff.official_keys`), reshapes the
layer-scale, RMSNorm-gain and pooling-weight tensors that the official code stores with singleton axes,
and refuses a state dict of another architecture or variant with the missing and unexpected keys.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import Tensor

from nowcast_pl.checkpoints import load_torch_file
from nowcast_pl.models.raindiff.official_keys import official_rules, to_official_key, translate_key

MODELS = ("raindiff", "diffcast")


def load_official_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The model state dict of an official checkpoint file: its ``model`` entry, or the file itself."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official checkpoint {path} does not exist")
    payload: Any = load_torch_file(path)
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} is not an official RainDiff/DiffCast checkpoint (expected a state dict or "
                         "a dict with a 'model' state dict)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _summary(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def convert_state_dict(official: dict[str, Tensor], target: dict[str, Tensor], model: str) -> dict[str, Tensor]:
    """Our state dict (same keys as ``target``, the state dict of the receiving ``RainDiffNet``).

    Args:
        official: official ``GaussianDiffusion`` state dict (with ``backbone_net.`` for SimVP).
        target: ``RainDiffNet.state_dict()`` of the architecture to fill (variant ``released`` for RainDiff).
        model: ``"raindiff"`` or ``"diffcast"``.

    Raises:
        ValueError: naming the missing and unexpected keys when the two architectures differ, or a shape
            mismatch.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    levels = len({m.group(1) for k in target if (m := re.match(r"denoiser\.downs\.(\d+)\.", k))})
    rules = official_rules(model, levels)
    up_units = {m.group(1) for k in official if (m := re.match(r"backbone_net\.dec\.dec\.(\d+)\.conv\.conv\.0\.", k))}
    converted: dict[str, Tensor] = {}
    unexpected = []
    for key, value in official.items():
        matched, ours = translate_key(key, rules, up_units)
        if not matched or (ours is not None and ours not in target):
            unexpected.append(key)
        elif ours is not None:
            converted[ours] = value
    missing = [k for k in target if k not in converted]
    if missing or unexpected:
        raise ValueError(
            f"the official state dict does not match this {model} architecture: missing {_summary(missing)}; "
            f"unexpected {_summary(unexpected)} (check the model name, model.init_args.variant: released, "
            "tokenwise_attention/post_attention and dim/dim_mults)")
    for key, value in converted.items():
        expected = target[key]
        if value.shape != expected.shape:
            if value.numel() != expected.numel():
                raise ValueError(f"shape of {key}: official {tuple(value.shape)} vs ours {tuple(expected.shape)}; "
                                 "check dim, dim_mults and in_frames")
            converted[key] = value.reshape(expected.shape)
    return {k: converted[k].to(target[k].dtype) for k in target}


def export_official_names(state: dict[str, Tensor], model: str) -> dict[str, Tensor]:
    """Our ``RainDiffNet`` state dict under the official names (the inverse of the name translation)."""
    levels = len({m.group(1) for k in state if (m := re.match(r"denoiser\.downs\.(\d+)\.", k))})
    rules = official_rules(model, levels)
    up_units = {m.group(1) for k in state if (m := re.match(r"mean\.decoder\.units\.(\d+)\.body\.2\.", k))}
    exported = {}
    for key, value in state.items():
        official = to_official_key(key, rules, up_units)
        if official is None:
            raise ValueError(f"{key} has no official {model} counterpart")
        exported[official] = value
    return exported
