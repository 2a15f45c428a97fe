"""Optimiser parameter groups and the warm-up + cosine learning-rate schedule shared by every task.

Weight decay is not applied to normalisation weights, biases and layer-scale vectors (the usual AdamW
practice, Loshchilov & Hutter 2019; e.g. timm's ``param_groups_weight_decay``): every parameter with fewer
than two dimensions, or whose name says it is a layer scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from torch import nn


def is_no_decay(name: str, parameter: nn.Parameter) -> bool:
    """True for biases, norm gains and layer scales: 0/1-D tensors or names containing ``layer_scale``."""
    return parameter.ndim <= 1 or "layer_scale" in name


def module_prefix_match(name: str, prefixes: Iterable[str]) -> str | None:
    """The longest prefix in ``prefixes`` naming ``name`` or one of its parent modules, else None."""
    matches = [p for p in prefixes if name == p or name.startswith(p + ".")]
    return max(matches, key=len) if matches else None


def build_param_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    *,
    lr: float,
    weight_decay: float,
    lr_multipliers: Mapping[str, float] | None = None,
) -> list[dict]:
    """AdamW parameter groups: (lr multiplier) x (decay / no decay), skipping frozen parameters.

    Args:
        named_parameters: ``module.named_parameters()``.
        lr: base learning rate.
        weight_decay: decay of the decayed groups.
        lr_multipliers: sub-module name (e.g. ``"vae"``, ``"net.encoder"``) -> factor on ``lr``; the longest
            matching prefix wins; other parameters use factor 1.

    Returns:
        Non-empty groups, each ``{"params", "lr", "weight_decay", "name"}``; ``name`` is e.g.
        ``"vae/no_decay"``.
    """
    multipliers = dict(lr_multipliers or {})
    groups: dict[tuple[str, bool], dict] = {}
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        prefix = module_prefix_match(name, multipliers) or ""
        no_decay = is_no_decay(name, parameter)
        key = (prefix, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "lr": lr * multipliers.get(prefix, 1.0),
                           "weight_decay": 0.0 if no_decay else weight_decay,
                           "name": f"{prefix or 'all'}/{'no_decay' if no_decay else 'decay'}"}
        groups[key]["params"].append(parameter)
    return list(groups.values())


def warmup_cosine(warmup: int, start: float, total: int | Callable[[], int], floor: float, *,
                  cosine: bool) -> Callable[[int], float]:
    """LR multiplier per step: linear warm-up from ``start`` to 1, then cosine decay to ``floor`` (or flat).

    Args:
        warmup: warm-up steps.
        start: multiplier at step 0.
        total: step at which the cosine reaches ``floor``, or a function giving it, called once, at the first
            step that decays (so a trainer's estimate is asked for only once training has started).
        floor: final multiplier (``min_lr / lr``).
        cosine: False keeps 1 after the warm-up.
    """
    resolved: list[int] = [] if callable(total) else [total]

    def factor(step: int) -> float:
        if step < warmup:
            return start + (1.0 - start) * step / warmup
        if not cosine or step == warmup:
            return 1.0
        if not resolved:
            resolved.append(total())
        progress = min(1.0, (step - warmup) / max(1, resolved[0] - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
