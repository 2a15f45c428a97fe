"""Exact resume in the middle of an epoch: a fit preempted by SLURM's requeue signal and resumed with the same
command line (``--ckpt_path auto``) ends where an uninterrupted fit ends, batch for batch and noise for noise."""

import time

import numpy as np
import pytest
import torch

from nowcast_pl.callbacks.preemption import PreemptionCheckpoint, slurm_job_id
from nowcast_pl.cli import build_cli
from nowcast_pl.resume import newest_checkpoint, wait_until_new_events_sort_last
from tests.helpers.scaleout import (
    DISTINCT_TASKS,
    SIMVP,
    TOY_DIFFUSION,
    assert_same_training_state,
    case_params,
    fake_slurm_env,
    final_checkpoint,
    load_checkpoint,
    scalars,
    signal_config,
)

BATCH = 4
STEPS_PER_EPOCH = 3  # 15 training windows, batches of 4 (the last, partial one dropped)
PREEMPT_AT = STEPS_PER_EPOCH + 2  # in the middle of the second epoch, after a validation
CHECKPOINT_EVERY = 2
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("case", case_params(SIMVP, TOY_DIFFUSION, shipped=DISTINCT_TASKS))
def test_preempted_fit_resumes_exactly_mid_epoch(case, tmp_path, monkeypatch):
    args = [*case.args(tmp_path), "--data.init_args.batch_size", str(BATCH), "--trainer.max_epochs", "2",
            "--checkpoint_every_n_steps", str(CHECKPOINT_EVERY), "--ckpt_path", "auto"]
    if case is TOY_DIFFUSION:  # the data position must be exact with worker processes too
        args += ["--data.init_args.num_workers", "2"]
    build_cli(["fit", *args, "--run_name", "straight"])

    fake_slurm_env(monkeypatch)
    requeued = []
    monkeypatch.setattr(PreemptionCheckpoint, "_requeue", lambda self: requeued.append(slurm_job_id()))
    with pytest.raises(SystemExit):  # Lightning's SIGTERMException once the requeue checkpoint is written
        build_cli(["fit", *args, "--run_name", "cut", "--config", str(signal_config(tmp_path, PREEMPT_AT))])
    run = tmp_path / "runs" / "cut"
    requeue = run / "hpc_ckpt_1.ckpt"
    assert load_checkpoint(requeue)["global_step"] == PREEMPT_AT
    assert requeued == ["4242"]
    assert load_checkpoint(final_checkpoint(run))["global_step"] == PREEMPT_AT // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    assert newest_checkpoint(run, run / "checkpoints") == requeue

    # The requeued job: same command line, every checkpoint read by the safe loader only.
    safe_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: safe_load(*a, **(k | {"weights_only": True})))
    build_cli(["fit", *args, "--run_name", "cut"])
    straight = load_checkpoint(final_checkpoint(tmp_path / "runs/straight"))
    resumed = load_checkpoint(final_checkpoint(run))
    assert resumed["global_step"] == 2 * STEPS_PER_EPOCH
    assert_same_training_state(resumed, straight)

    # TensorBoard: one folder, every step once, the same losses as the uninterrupted run.
    cut_losses, straight_losses = scalars(run, "train/loss"), scalars(tmp_path / "runs/straight", "train/loss")
    assert [s for s, _ in cut_losses] == [s for s, _ in straight_losses] == list(range(2 * STEPS_PER_EPOCH))
    np.testing.assert_allclose([v for _, v in cut_losses], [v for _, v in straight_losses], rtol=1e-5)

    if case is SIMVP:
        build_cli(["test", *case.args(tmp_path), "--run_name", "cut", "--ckpt_path", str(requeue),
                   "--trainer.limit_test_batches", "1"])
        assert (run / "test_metrics.json").exists()


def test_a_resumed_events_file_sorts_after_the_interrupted_runs_file(tmp_path):
    opened = int(time.time())
    (tmp_path / f"events.out.tfevents.{opened:010d}.host.99.9").write_bytes(b"")
    wait_until_new_events_sort_last(tmp_path)
    assert f"{int(time.time()):010d}" > f"{opened:010d}"
