"""Random-number states in checkpoints, per rank, so a resumed fit draws the noise an uninterrupted one would.

The training noise of the diffusion tasks (timesteps, ε, condition dropout) and dropout come from the global
generators of torch (CPU and CUDA), NumPy and Python; evaluation ensembles use their own seeded generators.
Every checkpoint stores the states of every rank under ``checkpoint["random_states"]`` as tensors, ints and
lists (types ``torch.load(weights_only=True)`` accepts), and a resumed fit restores this rank's states.

Validation during ``fit`` (and the sanity check at its start) runs on a copy of the states: the training
stream continues afterwards as if validation had not drawn anything. Without this, the sanity check of a
resumed run would shift the training noise of everything after it.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

CHECKPOINT_KEY = "random_states"


def capture_random_state() -> dict[str, Any]:
    """The global generator states of this process: ``{"torch", "cuda", "numpy", "python"}``."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, words, gauss_next = random.getstate()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(cuda),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
    }


def restore_random_state(state: dict[str, Any]) -> None:
    """Set the global generators to a :func:`capture_random_state` result."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["position"],
                         np_state["has_gauss"], np_state["gauss"]))
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(int(w) for w in py_state["words"]), py_state["gauss_next"]))


def _gather(state: dict[str, Any], world_size: int) -> list[dict[str, Any]]:
    if world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, state)
    return states


class RandomStateCheckpoint(Callback):
    """Saves every rank's generator states in checkpoints, restores them on resume, forks them for validation."""

    def __init__(self) -> None:
        self._training_state: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # Called on every rank (Lightning builds the checkpoint everywhere and writes it on rank 0).
        state = self._training_state or capture_random_state()
        checkpoint[CHECKPOINT_KEY] = _gather(state, trainer.world_size)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            return
        states = checkpoint.get(CHECKPOINT_KEY)
        if not states:
            warnings.warn("the checkpoint holds no random states: the resumed run draws different noise than "
                          "an uninterrupted run would", stacklevel=2)
            return
        if len(states) != trainer.world_size:
            warnings.warn(f"the checkpoint holds random states of {len(states)} ranks and this run has "
                          f"{trainer.world_size}: the noise differs from an uninterrupted run", stacklevel=2)
        restore_random_state(states[trainer.global_rank % len(states)])

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self._training_state = capture_random_state()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._training_state is not None:
            restore_random_state(self._training_state)
            self._training_state = None
