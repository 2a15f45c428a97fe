"""``last.ckpt``: the newest training state of a fit, written often, atomically, and on SIGTERM/SIGINT.

When ``<dirpath>/last.ckpt`` is written (every write holds the full training state: weights, optimiser,
schedulers, loop counters, the training loader's position and every rank's random states):

- after every ``every_n_steps`` optimiser steps, and after ``every_n_minutes`` of training since the last write;
- at the end of every training epoch, and after every validation in the middle of an epoch;
- at the step where ``max_steps`` is reached, so ``--trainer.max_steps`` can later be raised and the run
  extended exactly as if it had never stopped (the state after a mid-epoch stop claims a finished epoch);
- at the end of fit, if nothing was written at the final step;
- at the first step boundary after ``SIGTERM`` or ``SIGINT`` (Ctrl-C): the fit then stops, prints one line
  on stderr naming the checkpoint, and the process exits with ``128 + signal`` (143 for SIGTERM, 130 for
  SIGINT), so ``nowcast fit ... && nowcast test ...`` does not carry on with a half-trained model. A
  validation already running is finished first. A second Ctrl-C aborts at once without a new checkpoint.

Step-triggered writes happen only right after an optimiser step: with ``accumulate_grad_batches`` the batches
in between hold gradients that no checkpoint stores.

Each write goes to ``last.ckpt.tmp`` in the same folder, is flushed to disk (``fsync``) and renamed over
``last.ckpt`` (``os.replace``), so a kill at any moment leaves the previous ``last.ckpt`` whole. The temporary
name does not match ``last*.ckpt``, so ``--ckpt_path last`` never picks it up.

Lightning's own ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` at an epoch or validation end only
when a top-k checkpoint is saved at the same step (Lightning 2.6), and in place; this callback does not depend
on top-k and never leaves a half-written file. The SLURM requeue signal is handled separately by
:class:`~nowcast_pl.callbacks.preemption.PreemptionCheckpoint`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

LAST_NAME = "last.ckpt"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def replace_durably(source: Path, target: Path) -> None:
    """Flush ``source`` to disk and rename it over ``target`` (same folder), then flush the folder entry."""
    descriptor = os.open(source, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(source, target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


class LastCheckpoint(Callback):
    """Write ``<dirpath>/last.ckpt`` often and atomically, and checkpoint-then-stop on SIGTERM/SIGINT.

    Args:
        dirpath: folder of ``last.ckpt`` (default ``<trainer.default_root_dir>/checkpoints``).
        every_n_steps: also write after every this many optimiser steps (0: off).
        every_n_minutes: also write once this many minutes of training have passed since the last write
            (0: off), so a crash, out-of-memory error or node failure loses at most that much training.
    """

    def __init__(self, dirpath: str | None = None, every_n_steps: int = 0, every_n_minutes: float = 30.0) -> None:
        if every_n_steps < 0 or every_n_minutes < 0:
            raise ValueError(f"LastCheckpoint: every_n_steps={every_n_steps} and every_n_minutes={every_n_minutes} "
                             "must be >= 0 (0 turns the trigger off)")
        self.dirpath = dirpath
        self.every_n_steps = every_n_steps
        self.every_n_minutes = every_n_minutes
        self.stop_signal: int | None = None
        self._saved_step: int | None = None
        self._stepped_at = 0
        self._last_write_time = 0.0

    @property
    def path(self) -> Path:
        """The checkpoint file, ``<dirpath>/last.ckpt``."""
        return Path(self.dirpath) / LAST_NAME

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
        self.stop_signal, self._saved_step = None, None

    # ----------------------------------------------------------------------------------------- signals
    def on_sanity_check_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install_signal_handlers(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._install_signal_handlers(trainer)
        self._last_write_time = time.monotonic()
        self._stepped_at = trainer.global_step

    def _install_signal_handlers(self, trainer: pl.Trainer) -> None:
        # After Lightning's own SIGTERM handler (registered after on_fit_start), which it would otherwise
        # compose with this one; Lightning's teardown restores the handlers it found before the fit.
        if trainer.state.fn != TrainerFn.FITTING or threading.current_thread() is not threading.main_thread():
            return
        if trainer.received_sigterm and self.stop_signal is None:  # caught by Lightning's handler meanwhile
            self.stop_signal = signal.SIGTERM
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._record_signal)

    def _record_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.stop_signal == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: abort now
        if self.stop_signal is None:
            self.stop_signal = signum
            hint = " (Ctrl-C again to abort without it)" if signum == signal.SIGINT else ""
            # os.write: print() may be interrupted inside another write to stderr and raise a reentrant-call error
            os.write(sys.stderr.fileno(), f"nowcast: {signal.Signals(signum).name} received, writing a checkpoint "
                                          f"at the end of this step{hint}\n".encode())

    # ----------------------------------------------------------------------------------------- triggers
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._stepped_at:
            return  # a batch accumulating gradients: the state between optimiser steps is not resumable
        self._stepped_at = step
        now = time.monotonic()
        time_due = self.every_n_minutes > 0 and now - self._last_write_time >= 60 * self.every_n_minutes
        stop, time_due = self._agree(trainer, pl_module, self.stop_signal is not None, time_due)
        steps_due = self.every_n_steps > 0 and step % self.every_n_steps == 0
        max_steps_reached = 0 < trainer.max_steps <= step
        if stop or time_due or steps_due or max_steps_reached:
            self.write(trainer)
        if stop:
            # Lightning raises SIGTERMException once this step's metrics are logged and before the next batch.
            self.stop_signal = self.stop_signal or signal.SIGTERM  # a rank signalled only through another rank
            trainer._signal_connector.received_sigterm = True

    @staticmethod
    def _agree(trainer: pl.Trainer, pl_module: pl.LightningModule, stop: bool, time_due: bool) -> tuple[bool, bool]:
        """Every rank stops if any rank was signalled; every rank writes when rank 0's clock says so."""
        if trainer.world_size == 1:
            return stop, time_due
        flags = torch.tensor([stop, time_due and trainer.is_global_zero], device=pl_module.device)
        flags = trainer.strategy.reduce(flags.int(), reduce_op=dist.ReduceOp.MAX)
        return bool(flags[0]), bool(flags[1])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch or self._saved_step == trainer.global_step:
            return  # the epoch-end write follows, or this step is already written
        self.write(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Also called when max_steps stops a fit in the middle of an epoch; that state was written at the step.
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self.write(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._saved_step != trainer.global_step:
            self.write(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.stop_signal is None or not isinstance(exception, SIGTERMException):
            return
        # SIGTERMException is a SystemExit with status 0; a stop by signal must not look like a finished fit.
        exception.code = 128 + self.stop_signal
        if trainer.is_global_zero:
            resume = (f"checkpoint {self.path}; resume with the same command and --ckpt_path last"
                      if self.path.exists() else "no checkpoint was written")
            print(f"nowcast: fit stopped by {signal.Signals(self.stop_signal).name} at step {trainer.global_step}; "
                  f"{resume}", file=sys.stderr)

    # ----------------------------------------------------------------------------------------- writing
    def write(self, trainer: pl.Trainer) -> None:
        """Write the full training state to ``last.ckpt`` through ``last.ckpt.tmp`` (call on every rank)."""
        temporary = self.path.with_name(LAST_NAME + ".tmp")
        trainer.save_checkpoint(temporary, weights_only=False)  # every rank builds the full state; rank 0 writes it
        if trainer.is_global_zero:
            replace_durably(temporary, self.path)
        self._saved_step = trainer.global_step
        self._last_write_time = time.monotonic()
