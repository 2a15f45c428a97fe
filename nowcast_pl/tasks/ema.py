"""Exponential moving average (EMA) of a task's networks, kept as buffers so checkpoints carry it.

``shadow <- decay * shadow + (1 - decay) * current`` after optimiser steps (Polyak & Juditsky 1992; the
diffusion practice of Ho et al. 2020, App. B). Floating-point parameters and buffers (e.g. BatchNorm running
statistics) are averaged; integer buffers (``num_batches_tracked``) are copied. Only the networks are
tracked, never metric states or the frozen LPIPS network inside the metrics.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

NamedTensors = Iterable[tuple[str, Tensor]]


def shadow_name(name: str) -> str:
    """Buffer name of a tracked tensor (buffer names cannot contain dots)."""
    return name.replace(".", "__")


class ExponentialMovingAverage(nn.Module):
    """Shadow copies of named tensors, updated by :meth:`update` and exchanged by :meth:`swap`.

    Args:
        tensors: ``(name, tensor)`` pairs to track; the shadows start as copies of them.
        decay: EMA decay per update, in [0, 1).
    """

    def __init__(self, tensors: NamedTensors, *, decay: float) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"model.init_args.ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.names: list[str] = []
        for name, tensor in tensors:
            self.names.append(name)
            self.register_buffer(shadow_name(name), tensor.detach().clone())

    def shadows(self) -> dict[str, Tensor]:
        """Tracked name -> shadow tensor."""
        return {name: getattr(self, shadow_name(name)) for name in self.names}

    @torch.no_grad()
    def update(self, tensors: NamedTensors, *, decay: float | None = None) -> None:
        """One EMA step towards the current ``tensors`` (the same names as at construction).

        Args:
            tensors: current values.
            decay: this step's decay instead of ``self.decay`` (0 copies the current values).
        """
        decay = self.decay if decay is None else decay
        shadows = self.shadows()
        for name, tensor in tensors:
            shadow = shadows[name]
            if shadow.is_floating_point():
                shadow.lerp_(tensor.detach().to(shadow.dtype), 1.0 - decay)
            else:
                shadow.copy_(tensor)

    @torch.no_grad()
    def swap(self, tensors: NamedTensors) -> None:
        """Exchange the values of ``tensors`` and their shadows in place (call again to undo)."""
        shadows = self.shadows()
        for name, tensor in tensors:
            shadow = shadows[name]
            current = tensor.detach().clone()
            tensor.copy_(shadow)
            shadow.copy_(current)
