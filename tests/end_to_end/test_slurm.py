"""A real SLURM cluster (Debian's slurmctld, slurmd and munge on loopback, see :mod:`tests.helpers.slurm`) runs
``configs/slurm/single_node.sbatch`` as a 2-task CPU DDP job, preempts it in the middle of an epoch with
``scancel --signal=USR1``, and the requeued job ends at the right step with the parameters of an uninterrupted
job. Skipped with the reason where the SLURM packages or root are missing (``.ci/run`` installs them)."""

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.scaleout import (
    REPO,
    SIMVP,
    assert_same_training_state,
    callbacks_config,
    final_checkpoint,
    load_checkpoint,
)
from tests.helpers.slurm import local_slurm_cluster, missing_requirements

pytestmark = [pytest.mark.slurm, pytest.mark.multiprocess, pytest.mark.skipif(missing_requirements() is not None,
                                                    reason=str(missing_requirements()))]
TEMPLATE = REPO / "configs" / "slurm" / "single_node.sbatch"
MAX_EPOCHS = 3
RANK_STEPS_PER_EPOCH = 3  # 15 training windows over 2 ranks: 7 each, 3 batches of 2
PREEMPT_AFTER = RANK_STEPS_PER_EPOCH + 1  # send the signal once the second epoch is under way


def _job_script(folder: Path) -> Path:
    """The shipped template without its GPU request (this cluster has no GPUs)."""
    lines = [line for line in TEMPLATE.read_text().splitlines() if not line.startswith("#SBATCH --gres")]
    script = folder / "job.sbatch"
    script.write_text("\n".join(lines) + "\n")
    return script


def _fit_args(folder: Path, name: str) -> list[str]:
    """``nowcast fit`` options after the config: the tiny SimVP case on CPU, slowed down to be preemptible."""
    args = SIMVP.args(folder)
    config, rest = args[1], args[2:]
    position = rest.index("--trainer.devices")
    del rest[position : position + 2]  # the template sets the devices from SLURM
    slow = callbacks_config(folder / f"{name}_callbacks.yaml",
                            ("SlowSteps", {"progress": str(folder / f"{name}.step"), "seconds": 1.0}))
    return [config, *rest, "--config", str(slow), "--trainer.max_epochs", str(MAX_EPOCHS),
            "--trainer.precision", "32-true", "--checkpoint_every_n_steps", "2"]


def _submit(cluster, folder: Path, name: str) -> str:
    environment = dict(cluster.env, RUN_NAME=name, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO),
                       PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = ["sbatch", "--parsable", "--ntasks-per-node=2", "--cpus-per-task=1", "--time=10:00",
               f"--output={folder}/{name}.out", f"--chdir={folder}", "--job-name", name,
               str(_job_script(folder)), *_fit_args(folder, name)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{shlex.join(command)}: {done.stderr}\n{cluster.logs()}"
    return done.stdout.strip().split(";")[0]


def _job_field(cluster, job: str, field: str) -> str:
    for token in cluster.run("scontrol", "show", "job", job, check=False).split():
        if token.startswith(f"{field}="):
            return token.split("=", 1)[1]
    return ""


def _wait(predicate, what: str, cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{cluster.logs()}")


def _read_step(path: Path) -> int:
    try:
        return int(path.read_text() or -1)
    except (FileNotFoundError, ValueError):
        return -1


def test_preempted_ddp_job_is_requeued_and_ends_like_an_uninterrupted_job(tmp_path):
    root = Path(f"/tmp/nowcast-slurm-{os.getpid()}")  # short: the munge socket path has a length limit
    with local_slurm_cluster(root, cpus=4) as cluster:
        straight = _submit(cluster, tmp_path, "straight")
        cut = _submit(cluster, tmp_path, "cut")
        _wait(lambda: _read_step(tmp_path / "cut.step") >= PREEMPT_AFTER, "the job to reach the second epoch",
              cluster, timeout=150)
        cluster.run("scancel", "--signal=USR1", cut)
        _wait(lambda: _job_field(cluster, cut, "Restarts") == "1", "the requeue", cluster, timeout=60)
        _wait(lambda: _job_field(cluster, cut, "JobState") == "PENDING"
              or _job_field(cluster, cut, "JobState") == "RUNNING", "the requeued job", cluster, timeout=60)
        if _job_field(cluster, cut, "JobState") == "PENDING":  # requeued jobs wait for a begin time
            cluster.run("scontrol", "update", f"JobId={cut}", "StartTime=now", check=False)
        for job in (straight, cut):
            _wait(lambda job=job: _job_field(cluster, job, "JobState") in ("COMPLETED", "FAILED", "CANCELLED"),
                  f"job {job} to finish", cluster, timeout=180)
        states = {job: _job_field(cluster, job, "JobState") for job in (straight, cut)}
        logs = {name: (tmp_path / f"{name}.out").read_text() for name in ("straight", "cut")}
        assert states == {straight: "COMPLETED", cut: "COMPLETED"}, logs
    assert not root.exists() and not cluster.leftover_pids()

    run = tmp_path / "runs" / "cut"
    requeue = load_checkpoint(run / "hpc_ckpt_1.ckpt")
    assert requeue["global_step"] % RANK_STEPS_PER_EPOCH != 0  # mid-epoch
    assert len(requeue["random_states"]) == 2  # both ranks' generators
    assert logs["cut"].count(f"job {cut} start ") == 2 and f"job {cut} start 1 " in logs["cut"]
    final = load_checkpoint(final_checkpoint(run))
    assert final["global_step"] == MAX_EPOCHS * RANK_STEPS_PER_EPOCH
    assert_same_training_state(final, load_checkpoint(final_checkpoint(tmp_path / "runs" / "straight")))
