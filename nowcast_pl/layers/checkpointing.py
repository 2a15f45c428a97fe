"""Activation checkpointing that leaves BatchNorm running statistics as an uncheckpointed pass would.

``torch.utils.checkpoint`` re-runs the forward pass during backward; a BatchNorm layer in training mode
would then update its running mean and variance a second time. Here the recomputation runs with every
BatchNorm's momentum at 0 (running statistics unchanged), so losses, gradients and running statistics are
those of the plain forward pass; only memory (lower) and time (one more forward) differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@contextlib.contextmanager
def frozen_batchnorm_statistics(module: nn.Module) -> Iterator[None]:
    """Within the context, BatchNorm layers of ``module`` do not change their running statistics."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(layers, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def checkpointed(module: nn.Module, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` with its activations recomputed in backward (non-reentrant checkpoint).

    ``module`` holds the BatchNorm layers that ``function`` uses; their statistics are not updated twice.
    Outside training or without gradients this is a plain call.
    """
    if not (module.training and torch.is_grad_enabled()):
        return function(*args, **kwargs)

    def contexts() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
        return contextlib.nullcontext(), frozen_batchnorm_statistics(module)

    return checkpoint(function, *args, use_reentrant=False, context_fn=contexts, **kwargs)
