"""Fault injection: ``nowcast fit`` killed with SIGKILL at seeded random moments, and once while ``last.ckpt`` is
being replaced, then resumed each time with ``--ckpt_path last``, ends with the parameters of an uninterrupted
fit, and no kill loses more than the step in flight (a checkpoint is written after every step)."""

import random
import time
from pathlib import Path

import pytest

from tests.helpers.scaleout import (
    SIMVP,
    assert_same_training_state,
    callbacks_config,
    load_checkpoint,
    read_step,
    start_fit,
)

pytestmark = pytest.mark.multiprocess  # the straight fit runs beside the killed ones
MAX_EPOCHS = 2
STEPS = MAX_EPOCHS * 7  # 15 training windows, batches of 2
STEP_SECONDS = 0.1  # SlowSteps: long enough for kills to land between and inside checkpoint writes
RANDOM_KILLS = 3
KILL_WITHIN_SECONDS = 0.5  # after the resumed fit's first step; under STEPS / RANDOM_KILLS steps


def _fit(folder: Path, run_name: str, logs: str, *extra: str):
    slow = callbacks_config(folder / "slow.yaml", ("SlowSteps", {"progress": str(folder / "step"),
                                                                 "seconds": STEP_SECONDS}))
    (folder / "step").unlink(missing_ok=True)
    return start_fit([*SIMVP.args(folder), "--config", str(slow), "--run_name", run_name,
                      "--trainer.max_epochs", str(MAX_EPOCHS), "--checkpoint_every_n_steps", "1", *extra],
                     logs=folder / logs)


def _wait_until(condition, fit, what: str, logs: Path, *, poll_seconds: float = 0.002, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if fit.poll() is not None or time.monotonic() > deadline:
            errors = logs.with_suffix(".err").read_text()
            pytest.fail(f"{what}: the fit ended ({fit.returncode}) or timed out\n{errors}")
        time.sleep(poll_seconds)


def _kill(fit) -> None:
    fit.kill()
    fit.wait(timeout=60)


def _assert_checkpoint_loses_at_most_the_step_in_flight(checkpoint: Path, reached: int) -> int:
    """The step of ``last.ckpt`` (0 when the kill came before the first write), one of the last two reached."""
    step = load_checkpoint(checkpoint)["global_step"] if checkpoint.exists() else 0  # the safe loader reads it all
    assert reached - 1 <= step <= reached, f"last.ckpt at step {step}, the fit had reached {reached}"
    return step


def _written_after(path: Path, start_ns: int) -> bool:
    try:
        return path.stat().st_mtime_ns >= start_ns
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("seed", [0])
def test_fit_killed_at_random_moments_and_mid_write_resumes_to_the_uninterrupted_result(tmp_path, seed):
    straight_folder, cut_folder = tmp_path / "straight", tmp_path / "cut"
    straight_folder.mkdir()
    cut_folder.mkdir()
    straight = _fit(straight_folder, "straight", "straight")
    checkpoint = cut_folder / "runs/cut/checkpoints/last.ckpt"
    temporary = checkpoint.with_name("last.ckpt.tmp")
    rng = random.Random(seed)
    resume: list[str] = []
    step = 0
    for kill in range(RANDOM_KILLS):
        fit = _fit(cut_folder, "cut", f"kill{kill}", *resume)
        _wait_until(lambda done=step: read_step(cut_folder / "step") > done, fit, f"kill {kill}",
                    cut_folder / f"kill{kill}")
        time.sleep(rng.uniform(0, KILL_WITHIN_SECONDS))
        _kill(fit)
        step = _assert_checkpoint_loses_at_most_the_step_in_flight(checkpoint, read_step(cut_folder / "step"))
        assert step < STEPS, "the fit ended before the kill"
        resume = ["--ckpt_path", "last"] if checkpoint.exists() else []

    started = time.time_ns()
    fit = _fit(cut_folder, "cut", "mid_write", *resume)
    _wait_until(lambda: read_step(cut_folder / "step") > step, fit, "training", cut_folder / "mid_write")
    # Then no pause between looks: the temporary file lives only while it is flushed to disk.
    _wait_until(lambda: _written_after(temporary, started), fit, "a checkpoint write", cut_folder / "mid_write",
                poll_seconds=0)
    _kill(fit)
    assert temporary.exists(), "the kill came after the write was complete"
    _assert_checkpoint_loses_at_most_the_step_in_flight(checkpoint, read_step(cut_folder / "step"))

    finish = _fit(cut_folder, "cut", "finish", "--ckpt_path", "last")
    assert finish.wait(timeout=300) == 0, (cut_folder / "finish.err").read_text()
    assert straight.wait(timeout=300) == 0, (straight_folder / "straight.err").read_text()
    resumed = load_checkpoint(checkpoint)
    assert resumed["global_step"] == STEPS
    assert_same_training_state(resumed, load_checkpoint(straight_folder / "runs/straight/checkpoints/last.ckpt"))
