"""SLURM preemption: on the requeue signal, checkpoint at the next step boundary, requeue the job, and stop.

Lightning's own SLURM handler saves ``hpc_ckpt_N.ckpt`` from inside the signal handler, i.e. wherever the
signal lands (mid-backward, mid-optimiser-step, at a different step on each rank; Lightning issue #21406),
so the checkpoint need not be a state the run ever passed through. This callback replaces that handler when
Lightning's :class:`~lightning.fabric.plugins.environments.SLURMEnvironment` is active with ``auto_requeue``:
the handler only records the signal; after every optimiser step the ranks agree (one all-reduce of a flag)
whether any of them was signalled, and if so all of them write the same ``hpc_ckpt_N.ckpt`` (Lightning's name
and folder, ``trainer.default_root_dir``), rank 0 runs ``scontrol requeue``, and training stops once the
step's metrics are logged. ``nowcast fit --ckpt_path auto`` resumes from it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


def slurm_job_id() -> str:
    """The id ``scontrol requeue`` takes: ``<array job>_<task>`` in job arrays, else ``$SLURM_JOB_ID``."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ["SLURM_JOB_ID"]


class PreemptionCheckpoint(Callback):
    """Checkpoint, requeue and stop at the first step boundary after SLURM's requeue signal (``SIGUSR1``)."""

    def __init__(self) -> None:
        self.signalled = False
        self.checkpoint_path: str | None = None
        self._signum: int | None = None
        self._previous_handler: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        environment = trainer._accelerator_connector.cluster_environment
        if stage != "fit" or not isinstance(environment, SLURMEnvironment) or not environment.auto_requeue:
            return
        # Installed before the trainer registers its own handler, which it then leaves out.
        self._signum = environment.requeue_signal or signal.SIGUSR1
        self._previous_handler = signal.signal(self._signum, self._record_signal)

    def _record_signal(self, signum: int, frame: Any) -> None:
        self.signalled = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self._signum is None:
            return
        flag = torch.tensor(self.signalled, device=pl_module.device)
        if not trainer.strategy.reduce_boolean_decision(flag, all=False):
            return
        path = trainer.strategy.broadcast(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))
        trainer.save_checkpoint(path, weights_only=False)  # the full training state
        self.checkpoint_path = path
        if trainer.is_global_zero:
            self._requeue()
        # Lightning stops with SIGTERMException after this step's metrics are logged (and before the next
        # batch is fetched), so the TensorBoard record ends exactly where the checkpoint does.
        trainer._signal_connector.received_sigterm = True

    def _requeue(self) -> None:
        job = slurm_job_id()
        try:
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
        except FileNotFoundError:
            log.warning("scontrol not found: job %s was not requeued; resubmit it to resume", job)
            return
        if result.returncode == 0:
            log.info("requeued SLURM job %s", job)
        else:
            log.warning("`scontrol requeue %s` failed (%s): %s", job, result.returncode, result.stderr.strip())

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._signum is not None:
            signal.signal(self._signum, self._previous_handler)
            self._signum = None
