"""Classifier-free guidance (Ho & Salimans 2022): condition dropout in training, guided outputs in sampling.

A condition is a tensor ``(B, ...)`` or a (nested) tuple/list/dict of them ("pytree"); the unconditional
("null") condition used by both official codes is all zeros, which ``drop_condition(cond, 1.0)`` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

Cond = Any  # a Tensor (B, ...) or a tuple/list/dict of them


def _map(fn: Callable[..., Tensor], tree: Cond, *others: Cond) -> Cond:
    """Apply ``fn`` leaf-wise to one or more pytrees of the same structure (None leaves stay None)."""
    if tree is None:
        return None
    if isinstance(tree, Tensor):
        return fn(tree, *others)
    if isinstance(tree, dict):
        return {key: _map(fn, tree[key], *(other[key] for other in others)) for key in tree}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map(fn, *leaves) for leaves in zip(tree, *others, strict=True))
    raise TypeError(f"a condition must be a Tensor or a tuple/list/dict of Tensors, got {type(tree).__name__}")


def _first_tensor(tree: Cond) -> Tensor:
    leaves: list[Tensor] = []
    _map(lambda leaf: leaves.append(leaf) or leaf, tree)
    if not leaves:
        raise ValueError("the condition holds no tensor to drop")
    return leaves[0]


def drop_condition(cond: Cond, p: float, *, generator: torch.Generator | None = None,
                   per_batch: bool = False) -> Cond:
    """Zero the condition of dropped samples, for classifier-free guidance training (Ho & Salimans 2022, Alg. 1).

    Args:
        cond: tensor ``(B, ...)`` or pytree of them (all with the same B).
        p: drop probability in [0, 1] (p_uncond; 0.15 in the released STLDM code).
        generator: CPU generator for the Bernoulli draws (None: torch's global RNG).
        per_batch: drop the whole batch with probability p (one draw, as released STLDM does) instead of each
            sample independently.

    Returns: a pytree like ``cond`` with dropped rows set to 0 (kept rows are the same tensors' values).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition drop probability must be in [0, 1], got {p}")
    batch = _first_tensor(cond).shape[0]
    draws = torch.rand(() if per_batch else (batch,), generator=generator)
    keep = draws >= p

    def apply(leaf: Tensor) -> Tensor:
        row_keep = keep.to(leaf.device).expand(batch).view((batch,) + (1,) * (leaf.dim() - 1))
        return torch.where(row_keep, leaf, torch.zeros_like(leaf))
    return _map(apply, cond)


def _scale_at(scale: float | Tensor, t: Tensor, like: Tensor) -> float | Tensor:
    """The guidance weight w: a float, or a ``(T,)`` per-time vector read at each row's t (STLDM's CFG_sch)."""
    if not isinstance(scale, Tensor):
        return scale
    view = (-1,) + (1,) * (like.dim() - 1)
    return scale.to(device=like.device, dtype=like.dtype)[t.to(like.device)].view(view)


def guided(network_fn: Callable[[Tensor, Tensor, Cond], Tensor], cond: Cond, null_cond: Cond,
           scale: float | Tensor, *, batched: bool = False) -> Callable[[Tensor, Tensor], Tensor]:
    """Classifier-free guided network ``fn(x_t, t) = (1 + w) f(x_t, t, cond) - w f(x_t, t, null_cond)``
    (Ho & Salimans 2022, eq. 6), computed as ``c + w (c - u)``.

    Args:
        network_fn: ``(x_t (B, ...), t (B,), cond) -> output (B, ...)`` (ε, x0 or v: all are linear in each
            other given x_t, so guiding any of them gives the same x̂0).
        cond, null_cond: conditions (tensors or pytrees of the same structure).
        scale: w >= 0, a float or a ``(T,)`` tensor of per-time weights. A float 0 returns a function making
            exactly one unguided call per step.
        batched: evaluate conditional and unconditional outputs in one call of batch 2B.
    """
    if not isinstance(scale, Tensor) and scale == 0:
        return lambda x_t, t: network_fn(x_t, t, cond)

    def guided_fn(x_t: Tensor, t: Tensor) -> Tensor:
        if batched:
            both_cond = _map(lambda c, u: torch.cat((c, u)), cond, null_cond)
            conditional, unconditional = network_fn(torch.cat((x_t, x_t)), torch.cat((t, t)), both_cond).chunk(2)
        else:
            conditional, unconditional = network_fn(x_t, t, cond), network_fn(x_t, t, null_cond)
        return conditional + _scale_at(scale, t, conditional) * (conditional - unconditional)
    return guided_fn
