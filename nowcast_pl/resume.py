"""Which checkpoint a run starts from: ``--ckpt_path last|auto``, starting over, and the TensorBoard purge step.

``last`` is the newest ``<run>/checkpoints/last*.ckpt``. A SLURM job that is preempted and requeued runs the
same command line again; its newest state is either the requeue checkpoint ``<run>/hpc_ckpt_N.ckpt`` (written
on the signal) or ``last*.ckpt``, whichever was written later, and ``auto`` picks that one. Both are resolved
here to the concrete file before anything runs, so every resume, however it was named, is checked and purges
the TensorBoard steps the interrupted run logged after its checkpoint.

With nothing to resume, ``fit`` starts from scratch and says so in one line (the first submission of a job);
``test``, ``validate`` and ``predict`` refuse, naming the run folder and what it holds (a mistyped run name
would otherwise score random weights). ``fit`` without ``--ckpt_path`` in a run folder that already has
checkpoints refuses too; ``--restart true`` moves the run's checkpoints and TensorBoard events into
``<run>/replaced-<UTC time>/`` first, where neither ``last`` nor ``auto`` looks. A fresh start in a run folder
whose earlier run died before its first checkpoint moves that run's events there too.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

AUTO = "auto"
LAST = "last"
log = logging.getLogger(__name__)


def resume_candidates(run_dir: Path, checkpoint_dir: Path) -> list[Path]:
    """Requeue checkpoints of the run folder and ``last*.ckpt`` files of the checkpoint folder."""
    return sorted(Path(run_dir).glob("hpc_ckpt_*.ckpt")) + last_checkpoints(checkpoint_dir)


def last_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The ``last*.ckpt`` files of the checkpoint folder (``--ckpt_path last``)."""
    return sorted(Path(checkpoint_dir).glob("last*.ckpt"))


def newest(paths: list[Path]) -> Path | None:
    """The most recently written of ``paths`` (by modification time), or None when there is none."""
    return max(paths, key=lambda p: p.stat().st_mtime_ns) if paths else None


def newest_checkpoint(run_dir: Path, checkpoint_dir: Path) -> Path | None:
    """The most recently written resume candidate, or None when there is none."""
    return newest(resume_candidates(run_dir, checkpoint_dir))


def resolve_ckpt_path(ckpt_path: str | None, subcommand: str, run_dir: Path, checkpoint_dir: Path) -> str | None:
    """``--ckpt_path`` with ``last`` and ``auto`` replaced by the checkpoint file they name.

    Returns:
        The file, ``ckpt_path`` unchanged when it is neither name, or None for a ``fit`` with nothing to
        resume (logged as a fresh start).

    Raises:
        FileNotFoundError: ``test``/``validate``/``predict`` with nothing to load, naming the run folder.
    """
    if ckpt_path not in (LAST, AUTO):
        return ckpt_path
    candidates = last_checkpoints(checkpoint_dir) if ckpt_path == LAST else resume_candidates(run_dir, checkpoint_dir)
    found = newest(candidates)
    where = f"{checkpoint_dir}" if ckpt_path == LAST else f"{run_dir}/hpc_ckpt_*.ckpt or {checkpoint_dir}"
    if found is not None:
        log.warning("--ckpt_path %s: resuming from %s", ckpt_path, found)
        return str(found)
    if subcommand == "fit":
        log.warning("--ckpt_path %s: no checkpoint in %s yet, training from scratch", ckpt_path, where)
        return None
    raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no checkpoint in {where}; {describe_run_folder(run_dir)}; "
                            "check --run_name and --runs_root, or pass the checkpoint file")


def describe_run_folder(run_dir: Path, limit: int = 8) -> str:
    """One phrase: what the run folder holds, or that it does not exist and which runs its parent holds."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        runs = sorted(p.name for p in run_dir.parent.iterdir() if p.is_dir()) if run_dir.parent.is_dir() else []
        others = f"runs in {run_dir.parent}: {', '.join(runs[:limit])}" if runs else f"{run_dir.parent} has no runs"
        return f"the run folder {run_dir} does not exist ({others})"
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir())
    shown = ", ".join(entries[:limit]) + (", ..." if len(entries) > limit else "")
    return f"the run folder {run_dir} holds {shown or 'nothing'}"


def existing_checkpoints(run_dir: Path, checkpoint_dir: Path) -> list[Path]:
    """Every checkpoint of the run: requeue checkpoints and all ``*.ckpt`` of the checkpoint folder."""
    return sorted(Path(run_dir).glob("hpc_ckpt_*.ckpt")) + sorted(Path(checkpoint_dir).glob("*.ckpt"))


def refuse_silent_restart(run_dir: Path, checkpoint_dir: Path) -> None:
    """Refuse ``fit`` without ``--ckpt_path`` in a run folder that already has checkpoints.

    Raises:
        FileExistsError: naming the checkpoints and the three ways on.
    """
    found = existing_checkpoints(run_dir, checkpoint_dir)
    if found:
        names = ", ".join(str(p) for p in found[:3]) + (", ..." if len(found) > 3 else "")
        raise FileExistsError(f"run folder {run_dir} already has checkpoints ({names}): resume with --ckpt_path last, "
                              "start over with --restart true, or choose a new --run_name")


def start_over(run_dir: Path, checkpoint_dir: Path) -> Path | None:
    """Move the run's checkpoints and TensorBoard events into ``<run>/replaced-<UTC time>/`` (``--restart``).

    Returns:
        The folder they were moved to, or None when the run had none.
    """
    run_dir, checkpoint_dir = Path(run_dir), Path(checkpoint_dir)
    files = existing_checkpoints(run_dir, checkpoint_dir) + sorted(run_dir.glob("events.out.tfevents.*"))
    aside = move_aside(run_dir, files)
    if aside is not None:
        log.warning("--restart: moved %d checkpoint and TensorBoard files of %s to %s", len(files), run_dir, aside)
    return aside


def set_aside_events_without_checkpoint(run_dir: Path) -> Path | None:
    """Move the TensorBoard events of a run that died before its first checkpoint into ``<run>/replaced-<UTC>/``.

    A fresh start writes its steps from 0 again; left in place, the dead run's events would show every step
    twice (TensorBoard orders event files by name, which does not separate two runs started in one second).

    Returns:
        The folder they were moved to, or None when there were none.
    """
    files = sorted(Path(run_dir).glob("events.out.tfevents.*"))
    aside = move_aside(Path(run_dir), files)
    if aside is not None:
        log.warning("training from scratch: moved the TensorBoard events of the earlier run (it left no checkpoint) "
                    "to %s", aside)
    return aside


def move_aside(run_dir: Path, files: list[Path]) -> Path | None:
    """Move ``files`` (keeping their paths below ``run_dir``) into ``<run>/replaced-<UTC time>/``; nothing is
    deleted, and neither ``last`` nor ``auto`` looks there."""
    if not files:
        return None
    aside = run_dir / f"replaced-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    for path in files:
        target = aside / path.relative_to(run_dir) if path.is_relative_to(run_dir) else aside / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    return aside


def wait_until_new_events_sort_last(run_dir: Path) -> None:
    """Wait (at most one second) until an events file opened now sorts after the run folder's existing ones.

    TensorBoard reads a folder's event files in name order, and a name starts with the second it was opened
    (``events.out.tfevents.<seconds>.<host>.<pid>.<n>``). A resume's purge marker only drops the interrupted
    run's later steps if its file is read after theirs, which two files opened in the same second do not
    guarantee.
    """
    seconds = [int(p.name.split(".")[3]) for p in Path(run_dir).glob("events.out.tfevents.*")
               if p.name.split(".")[3].isdigit()]
    if seconds:
        time.sleep(max(0.0, max(seconds) + 1 - time.time()))


def checkpoint_global_step(path: str | Path) -> int:
    """The optimiser step a checkpoint was written at (read with the safe loader, memory-mapped)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
