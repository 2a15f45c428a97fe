"""``checkpoints/last.ckpt`` during ``nowcast fit``: written at epoch ends, after validations and every N minutes
while the fit runs; a fit stopped by ``max_steps`` extends exactly; SIGTERM and Ctrl-C leave a checkpoint of the
step reached and a non-zero exit status."""

import shutil
import signal
import time

import pytest
import yaml
from lightning.pytorch.callbacks import Callback

import nowcast_pl.callbacks.last_checkpoint as last_checkpoint
from nowcast_pl.cli import build_cli, main
from tests.helpers.cli import write_config
from tests.helpers.scaleout import (
    SIMVP,
    TOY_DIFFUSION,
    assert_same_training_state,
    callbacks_config,
    load_checkpoint,
    read_step,
    start_fit,
)

STEPS_PER_EPOCH = 7  # 15 training windows, batches of 2 (the last, partial one dropped); 3 per rank with 2 ranks
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CheckpointProbe(Callback):
    """Test helper: before every training step, note ``(global_step, step of last.ckpt or None, its training
    loader position)``; after every validation of the fit, note the step it followed."""

    def __init__(self, checkpoint: str) -> None:
        self.checkpoint = checkpoint
        self.seen: list[tuple] = []
        self.validated: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        try:
            state = load_checkpoint(self.checkpoint)
        except FileNotFoundError:
            self.seen.append((trainer.global_step, None, None))
            return
        loader = state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
        self.seen.append((trainer.global_step, state["global_step"], (loader["epoch"], loader["batches"])))

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validated.append(trainer.global_step)


class CheckpointCopy(Callback):
    """Test helper: copy ``checkpoint`` to ``copy`` before optimiser step ``step`` (0-based) runs."""

    def __init__(self, checkpoint: str, copy: str, step: int) -> None:
        self.checkpoint, self.copy, self.step = checkpoint, copy, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            shutil.copy(self.checkpoint, self.copy)


class FakeClock:
    """Test helper: ``monotonic()`` in seconds, advanced only by :class:`TrainingMinutes`."""

    now = 0.0

    @classmethod
    def monotonic(cls) -> float:
        return cls.now


class TrainingMinutes(Callback):
    """Test helper: every optimiser step takes ``seconds`` of :class:`FakeClock` time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        FakeClock.now += self.seconds


def _probe(cli) -> CheckpointProbe:
    return next(c for c in cli.trainer.callbacks if isinstance(c, CheckpointProbe))


def _callbacks(path, *callbacks):
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": f"{__name__}.{name}", "init_args": args} for name, args in callbacks]}}))
    return path


def test_last_checkpoint_is_written_at_every_epoch_end_and_validation_while_the_fit_runs(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, trainer={"max_epochs": 2, "val_check_interval": 3})
    checkpoint = tmp_path / "runs/during/checkpoints/last.ckpt"
    probes = _callbacks(tmp_path / "probe.yaml", ("CheckpointProbe", {"checkpoint": str(checkpoint)}))
    cli = build_cli(["fit", "--config", str(cfg), "--config", str(probes), "--runs_root", str(tmp_path / "runs"),
                     "--run_name", "during"])
    probe = _probe(cli)
    mid_epoch = [s for s in probe.validated if s % STEPS_PER_EPOCH]
    assert mid_epoch, f"no validation in the middle of an epoch: {probe.validated}"
    written = sorted(set(probe.validated) | {STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH})
    expected = []
    for step in range(2 * STEPS_PER_EPOCH):
        last = max((s for s in written if s <= step), default=None)
        position = None if last is None else divmod(last, STEPS_PER_EPOCH)
        expected.append((step, last, position))
    assert probe.seen == expected
    assert load_checkpoint(checkpoint)["global_step"] == 2 * STEPS_PER_EPOCH
    assert not checkpoint.with_name("last.ckpt.tmp").exists()


@pytest.mark.parametrize("case", [SIMVP, TOY_DIFFUSION], ids=lambda case: case.name)  # the EMA is swapped in
def test_fit_resumed_from_the_checkpoint_after_a_mid_epoch_validation_ends_like_an_uninterrupted_fit(
        tmp_path, store, case):
    cfg = write_config(tmp_path / "c.yaml", store, model=case.model,
                       model_args=case.model_args | {"schedule_steps": 14, "warmup_steps": 2},
                       trainer={"max_epochs": 2, "val_check_interval": 3})
    base = ["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs")]
    after_validation = tmp_path / "after_validation.ckpt"
    copy = _callbacks(tmp_path / "copy.yaml", ("CheckpointCopy", {
        "checkpoint": str(tmp_path / "runs/straight/checkpoints/last.ckpt"), "copy": str(after_validation),
        "step": 4}))
    build_cli([*base, "--config", str(copy), "--run_name", "straight"])
    assert load_checkpoint(after_validation)["global_step"] == 3  # written after the validation at step 3
    build_cli([*base, "--run_name", "resumed", "--ckpt_path", str(after_validation)])
    straight = load_checkpoint(tmp_path / "runs/straight/checkpoints/last.ckpt")
    resumed = load_checkpoint(tmp_path / "runs/resumed/checkpoints/last.ckpt")
    assert resumed["global_step"] == 2 * STEPS_PER_EPOCH
    assert_same_training_state(resumed, straight)


def test_last_checkpoint_is_written_every_n_minutes_of_training(tmp_path, store, monkeypatch):
    monkeypatch.setattr(last_checkpoint, "time", FakeClock)
    monkeypatch.setattr(FakeClock, "now", 0.0)
    cfg = write_config(tmp_path / "c.yaml", store, trainer={"max_epochs": 2, "limit_val_batches": 0})
    checkpoint = tmp_path / "runs/timed/checkpoints/last.ckpt"
    probes = _callbacks(tmp_path / "probe.yaml", ("CheckpointProbe", {"checkpoint": str(checkpoint)}),
                        ("TrainingMinutes", {"seconds": 20.0}))
    cli = build_cli(["fit", "--config", str(cfg), "--config", str(probes), "--runs_root", str(tmp_path / "runs"),
                     "--run_name", "timed", "--checkpoint_every_n_minutes", "0.5"])
    # 20 s per step, a write once 30 s have passed since the last one: steps 2, 4, 6; 7 (epoch end); 9, 11, 13.
    written = [2, 4, 6, 7, 9, 11, 13]
    seen = [(step, last) for step, last, _ in _probe(cli).seen]
    assert seen == [(step, max((s for s in written if s <= step), default=None))
                    for step in range(2 * STEPS_PER_EPOCH)]


def test_with_gradient_accumulation_last_checkpoint_is_written_only_after_optimiser_steps(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, trainer={"max_epochs": 1, "limit_val_batches": 0,
                                                            "accumulate_grad_batches": 2})
    checkpoint = tmp_path / "runs/accumulated/checkpoints/last.ckpt"
    probes = _callbacks(tmp_path / "probe.yaml", ("CheckpointProbe", {"checkpoint": str(checkpoint)}))
    cli = build_cli(["fit", "--config", str(cfg), "--config", str(probes), "--runs_root", str(tmp_path / "runs"),
                     "--run_name", "accumulated", "--checkpoint_every_n_steps", "1"])
    # 7 batches, an optimiser step after batches 2, 4, 6 and the last one: never a half-accumulated gradient.
    seen = [(last, position) for _, last, position in _probe(cli).seen]
    assert seen == [(None, None), (None, None), (1, (0, 2)), (1, (0, 2)), (2, (0, 4)), (2, (0, 4)), (3, (0, 6))]
    assert load_checkpoint(checkpoint)["global_step"] == 4


def test_raising_max_steps_extends_a_finished_fit_exactly(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, model_args={"schedule_steps": 8, "warmup_steps": 2},
                       trainer={"max_epochs": -1, "limit_val_batches": 0})
    base = ["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--data.init_args.num_workers", "0"]
    build_cli([*base, "--run_name", "straight", "--trainer.max_steps", "8"])
    build_cli([*base, "--run_name", "extended", "--trainer.max_steps", "5"])
    first = load_checkpoint(tmp_path / "runs/extended/checkpoints/last.ckpt")
    assert first["global_step"] == 5
    assert first["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batches": 5, "world_size": 1}]
    build_cli([*base, "--run_name", "extended", "--trainer.max_steps", "8", "--ckpt_path", "last"])
    straight = load_checkpoint(tmp_path / "runs/straight/checkpoints/last.ckpt")
    extended = load_checkpoint(tmp_path / "runs/extended/checkpoints/last.ckpt")
    assert extended["global_step"] == 8  # past the end of the first epoch (7 steps)
    assert_same_training_state(extended, straight)


def test_a_run_started_again_from_its_saved_config_has_one_last_checkpoint_writer(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, trainer={"limit_val_batches": 0})
    build_cli(["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "again",
               "--checkpoint_every_n_steps", "3"])
    saved = tmp_path / "runs/again/config.yaml"
    assert "nowcast_pl.callbacks.last_checkpoint.LastCheckpoint" in saved.read_text()
    cli = build_cli(["fit", "--config", str(saved), "--trainer.max_epochs", "2", "--ckpt_path", "last",
                     "--checkpoint_every_n_minutes", "5"])
    writers = [c for c in cli.trainer.callbacks if isinstance(c, last_checkpoint.LastCheckpoint)]
    assert [(w.every_n_steps, w.every_n_minutes) for w in writers] == [(3, 5.0)]
    assert load_checkpoint(tmp_path / "runs/again/checkpoints/last.ckpt")["global_step"] == 2 * STEPS_PER_EPOCH


def test_save_last_of_the_top_k_checkpoint_is_a_clear_error(tmp_path, store, capsys):
    cfg = write_config(tmp_path / "c.yaml", store)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--checkpoint.save_last", "true"])
    assert stop.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--checkpoint.save_last" in error and "--checkpoint_every_n_minutes" in error


@pytest.mark.parametrize(("signum", "ranks"), [(signal.SIGTERM, 1), (signal.SIGINT, 1),
                                               pytest.param(signal.SIGTERM, 2, marks=pytest.mark.multiprocess)],
                         ids=["SIGTERM", "SIGINT", "SIGTERM-ddp"])
def test_signal_checkpoints_the_step_reached_and_fails_the_fit(tmp_path, signum, ranks):
    progress = tmp_path / "step"
    slow = callbacks_config(tmp_path / "slow.yaml", ("SlowSteps", {"progress": str(progress), "seconds": 0.3}))
    args = SIMVP.args(tmp_path)
    args[args.index("--trainer.devices") + 1] = str(ranks)
    if ranks > 1:  # the signal reaches rank 0 only (Lightning starts the other rank); both must stop together
        args += ["--trainer.strategy", "ddp"]
    fit = start_fit([*args, "--config", str(slow), "--run_name", "stopped", "--trainer.max_epochs", "50"],
                    logs=tmp_path / "fit")
    deadline = time.monotonic() + 120
    while read_step(progress) < 2 and fit.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_step(progress) >= 2, (tmp_path / "fit.err").read_text()
    fit.send_signal(signum)
    assert fit.wait(timeout=120) == 128 + signum
    step = read_step(progress)
    checkpoint = tmp_path / "runs/stopped/checkpoints/last.ckpt"
    state = load_checkpoint(checkpoint)
    assert state["global_step"] == step > 0  # the step reached
    loader = state["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert (loader["epoch"], loader["batches"]) == divmod(step, STEPS_PER_EPOCH if ranks == 1 else 3)
    assert len(state["random_states"]) == ranks
    message = (tmp_path / "fit.err").read_text().strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(signum).name} at step {step}" in message
    assert str(checkpoint) in message and "--ckpt_path last" in message
