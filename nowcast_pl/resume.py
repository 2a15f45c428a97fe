"""Which checkpoint a fit resumes from: ``--ckpt_path auto`` and the TensorBoard purge step of a resume.

A SLURM job that is preempted and requeued runs the same command line again. Its newest state is either the
requeue checkpoint ``<run>/hpc_ckpt_N.ckpt`` (written on the signal) or ``<run>/checkpoints/last*.ckpt``
(written every N steps and at epoch ends), whichever was written later. Lightning loads the requeue
checkpoint only when ``ckpt_path`` is unset and ``last`` only looks at ``last*.ckpt``, so ``auto`` resolves
the choice here, and starts from scratch (saying so) when neither exists, as on the first submission.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

AUTO = "auto"
log = logging.getLogger(__name__)


def resume_candidates(run_dir: Path, checkpoint_dir: Path) -> list[Path]:
    """Requeue checkpoints of the run folder and ``last*.ckpt`` files of the checkpoint folder."""
    return sorted(Path(run_dir).glob("hpc_ckpt_*.ckpt")) + sorted(Path(checkpoint_dir).glob("last*.ckpt"))


def newest_checkpoint(run_dir: Path, checkpoint_dir: Path) -> Path | None:
    """The most recently written resume candidate (by modification time), or None when there is none."""
    candidates = resume_candidates(run_dir, checkpoint_dir)
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def resolve_auto(run_dir: Path, checkpoint_dir: Path) -> str | None:
    """``--ckpt_path auto``: the newest checkpoint as a path string, or None (fresh start) with a log line."""
    newest = newest_checkpoint(run_dir, checkpoint_dir)
    if newest is None:
        log.warning("--ckpt_path auto: no checkpoint in %s or %s yet, training from scratch", run_dir, checkpoint_dir)
        return None
    log.warning("--ckpt_path auto: resuming from %s", newest)
    return str(newest)


def checkpoint_global_step(path: str | Path) -> int:
    """The optimiser step a checkpoint was written at (read with the safe loader, memory-mapped)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
