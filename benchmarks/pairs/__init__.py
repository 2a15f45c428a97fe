"""Our model and the official one side by side, one module per official code base.

:mod:`benchmarks.pairs.raindiff` serves RainDiff and DiffCast (``thaondc-mbzuai/RaindDiff``,
``DeminYu98/DiffCast``), :mod:`benchmarks.pairs.stldm` serves STLDM (``sqfoo/stldm_official``). Each module
offers the same functions to the harnesses:

- ``parity(model, checkout, *, size, seed, ...) -> dict``: the settings and a :class:`benchmarks.harness.Comparison`;
- ``ours(model, config, overrides) -> Side`` and ``official(model, checkout, config, sample_steps) -> Side``:
  a :class:`Side` with one training step's loss and one forecast at fixed inputs and noise.

The official code is imported at run time from a checkout the user names (``--official PATH``), never copied.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

MODELS = ("raindiff", "diffcast", "stldm")
REPOSITORIES = {"raindiff": "thaondc-mbzuai/RaindDiff", "diffcast": "DeminYu98/DiffCast",
                "stldm": "sqfoo/stldm_official"}


@dataclass
class Side:
    """One code base's model ready to time.

    Attributes:
        module: the whole model (its parameters are counted and trained).
        loss: one training loss of a fixed batch (fresh noise and timestep per call), a scalar tensor.
        forecast: one forecast of a fixed input with the sampler and step count set by ``set_sampler``; frames
            ``(1, T_out, 1, H, W)`` in [0, 1].
        set_sampler: ``(sampler, steps)`` -> None; the official side knows only its own sampler.
        sampler: the paper sampler and its denoiser calls per forecast, e.g. ``("ddim", 250)``.
    """

    module: torch.nn.Module
    loss: Callable[[], torch.Tensor]
    forecast: Callable[[], torch.Tensor]
    set_sampler: Callable[[str, int], None]
    sampler: tuple[str, int]


def our_side(task: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
             forecast: Callable[[], torch.Tensor]) -> Side:
    """The :class:`Side` of one of our tasks: its training loss on ``(inputs, targets)``, ``forecast``, and the
    sampler settings of its ``sampling`` object."""

    def set_sampler(sampler: str, steps: int) -> None:
        task.sampling.sampler, task.sampling.sampling_steps = sampler, steps

    return Side(module=task, loss=lambda: task.training_loss({"inputs": inputs, "targets": targets})["loss"],
                forecast=forecast, set_sampler=set_sampler,
                sampler=(task.sampling.sampler, task.sampling.sampling_steps))


def pair_module(model: str) -> ModuleType:
    """The module of :mod:`benchmarks.pairs` that serves ``model``."""
    if model not in MODELS:
        raise SystemExit(f"--model {model!r} is not one of {', '.join(MODELS)}")
    return importlib.import_module("benchmarks.pairs.stldm" if model == "stldm" else "benchmarks.pairs.raindiff")
