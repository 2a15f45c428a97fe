"""The tiny model configurations that the scale-out tests (resume, DDP, bf16, SLURM) run, and helpers.

A case is either an inline configuration over the tiny test store (SimVP, the toy diffusion task) or a shipped
``configs/tiny/<name>.yaml`` with its store replaced by a tiny one. Shipped tiny configs that are not in the
repository yet are skipped with the reason; adding one is all a new model needs to be covered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from tests.helpers import REPO
from tests.helpers.cli import TINY_SIMVP, write_config
from tests.helpers.stores import write_moving_store

TINY_SPLITS = ('{"train": {"until": "2020-01-04", "stride": 1}, '
               '"val": {"after": "2020-01-04", "until": "2020-01-05", "stride": 1}, '
               '"test": {"after": "2020-01-05", "stride": 1}, "predict": {"after": "2020-01-05", "stride": 1}}')
# 3 training events of (window + 4) frames: 5 windows each, 15 in all.


@dataclass(frozen=True)
class Case:
    """A tiny model configuration: ``model`` class path and its arguments, or a shipped tiny config."""

    name: str
    model: str | None = None
    model_args: dict = field(default_factory=dict)

    @property
    def shipped(self) -> Path:
        return REPO / "configs" / "tiny" / f"{self.name}.yaml"

    def window(self) -> int:
        """in_frames + out_frames of the case."""
        if self.model is not None:
            return 8
        data = yaml.safe_load(self.shipped.read_text())["data"]["init_args"]
        return int(data["in_frames"]) + int(data["out_frames"])

    def args(self, folder: Path) -> list[str]:
        """``nowcast`` arguments of this case over a tiny store written under ``folder`` (no subcommand)."""
        store = folder / f"store{self.window()}.zarr"
        if not store.exists():
            write_moving_store(store, n_events=6, frames=self.window() + 4, size=16)
        if self.model is not None:
            config = write_config(folder / f"{self.name}.yaml", store, model=self.model, model_args=self.model_args)
            common = ["--config", str(config)]
        else:
            common = ["--config", str(self.shipped), "--data.init_args.store", str(store),
                      "--data.init_args.splits", TINY_SPLITS, "--trainer.val_check_interval", "1.0",
                      "--model.init_args.sampling_steps", "2"]  # the shipped tiny models are all diffusion
        return [*common, "--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2",
                "--data.init_args.num_workers", "0", "--runs_root", str(folder / "runs"),
                "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.max_steps", "-1",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "1",
                "--trainer.num_sanity_val_steps", "1",
                "--model.init_args.panel_every_n_val_steps", "0"]


TOY_DIFFUSION = Case("toy_diffusion", "tests.helpers.toy_diffusion.ToyDiffusionTask",
                     {"thresholds": [20.0, 35.0], "ema_decay": 0.9, "sampling_steps": 3, "eval_members": 2})
SIMVP = Case("simvp", "nowcast_pl.models.simvp.SimVPTask", dict(TINY_SIMVP))
SHIPPED_TINY = ("raindiff", "diffcast", "stldm")
# DiffCast is RainDiff's task with a deterministic mean of its own: the multi-process and resume checks run on the
# two tasks (single-process tests still run every shipped config).
DISTINCT_TASKS = ("raindiff", "stldm")


def case_params(*inline: Case, shipped: tuple[str, ...] = SHIPPED_TINY) -> list:
    """``inline`` cases plus the ``shipped`` tiny configs (skipped with the reason while not on main)."""
    params = [pytest.param(case, id=case.name) for case in inline]
    for name in shipped:
        case = Case(name)
        marks = () if case.shipped.exists() else pytest.mark.skip(reason=f"configs/tiny/{name}.yaml not on main yet")
        params.append(pytest.param(case, id=name, marks=marks))
    return params


class SignalAtStep(Callback):
    """Test helper: send ``SIGUSR1`` to this process (rank 0 only) during optimiser step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step - 1 and trainer.global_rank == 0:
            os.kill(os.getpid(), signal.SIGUSR1)


class SlowSteps(Callback):
    """Test helper: sleep after every optimiser step and write the step reached to ``progress`` (rank 0), so
    a test can send a signal in the middle of an epoch of a run in another process."""

    def __init__(self, progress: str, seconds: float) -> None:
        self.progress, self.seconds = Path(progress), seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 0:  # a kill mid-write must not leave the file empty: write aside, then rename
            written = self.progress.with_name(self.progress.name + ".tmp")
            written.write_text(str(trainer.global_step))
            os.replace(written, self.progress)
        time.sleep(self.seconds)


def callbacks_config(path: Path, *callbacks: tuple[str, dict]) -> Path:
    """A config fragment setting the trainer's callbacks to ``(class name in this module, init args)``."""
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": f"tests.helpers.scaleout.{name}", "init_args": args} for name, args in callbacks]}}))
    return path


def signal_config(folder: Path, step: int) -> Path:
    """A config fragment adding :class:`SignalAtStep` to the trainer's callbacks."""
    path = folder / "signal.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "tests.helpers.scaleout.SignalAtStep", "init_args": {"step": step}}]}}))
    return path


def fake_slurm_env(monkeypatch, job_id: str = "4242") -> None:
    """Environment of a one-task SLURM job (Lightning's SLURMEnvironment is detected, scontrol fails fast)."""
    values = {"SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_JOB_NAME": "nowcast", "SLURM_JOB_ID": job_id,
              "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1",
              "SLURM_CONF": "/nonexistent/slurm.conf"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def final_checkpoint(run_dir: Path) -> Path:
    """The newest ``checkpoints/last*.ckpt`` of a run (epoch-end and every-N-steps checkpoints both write one)."""
    return max((run_dir / "checkpoints").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime_ns)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint through torch's safe loader (no code execution)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training_state(resumed: dict, straight: dict, atol: float = 1e-6) -> None:
    """Weights (and EMA), optimiser moments, schedule and step of two checkpoints agree."""
    assert resumed["global_step"] == straight["global_step"]
    assert resumed["state_dict"].keys() == straight["state_dict"].keys()
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, atol=atol, rtol=0, msg=key)
    for ours, theirs in zip(resumed["optimizer_states"], straight["optimizer_states"], strict=True):
        for index, state in theirs["state"].items():
            for name, value in state.items():
                torch.testing.assert_close(ours["state"][index][name], value, atol=atol, rtol=0, msg=name)
    assert [s["last_epoch"] for s in resumed["lr_schedulers"]] == [s["last_epoch"] for s in straight["lr_schedulers"]]


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a TensorBoard scalar over every events file of a run folder, as TensorBoard shows it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def start_fit(args: list[str], *, logs: Path) -> subprocess.Popen:
    """``nowcast fit <args>`` as a child process (``python -m nowcast_pl``, one torch thread, this repository on
    the path) writing ``<logs>.out`` and ``<logs>.err``, ready to receive signals."""
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    with logs.with_suffix(".out").open("w") as out, logs.with_suffix(".err").open("w") as err:
        return subprocess.Popen([sys.executable, "-m", "nowcast_pl", "fit", *args], env=environment, cwd=REPO,
                                stdout=out, stderr=err)


def read_step(progress: Path) -> int:
    """The optimiser step :class:`SlowSteps` last wrote to ``progress`` (-1 before the first)."""
    try:
        return int(progress.read_text() or -1)
    except (FileNotFoundError, ValueError):
        return -1
