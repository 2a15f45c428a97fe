"""Nothing lost, nothing silently wrong: what ``--ckpt_path`` and a second ``fit`` do when the run folder or
the checkpoint is not what the command expects (each refusal is one line naming the file and the fix)."""

import argparse
import json
import logging
import shutil

import pytest
import torch
import yaml

from nowcast_pl.cli import build_cli, main
from nowcast_pl.convert.cli import main as convert_main
from tests.helpers.cli import write_config
from tests.helpers.scaleout import final_checkpoint, load_checkpoint, scalars

RAINDIFF = "nowcast_pl.models.raindiff.RainDiffTask"
TINY_RAINDIFF = {"dim": 8, "dim_mults": [1, 2], "hid_S": 8, "hid_T": 16, "N_T": 2, "sampling_steps": 2,
                 "thresholds": [20.0, 35.0]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store):
    """A one-epoch SimVP run: (its config, runs_root); the run is named ``r``."""
    folder = tmp_path_factory.mktemp("trained")
    config = write_config(folder / "c.yaml", store, trainer={"limit_val_batches": 1, "limit_test_batches": 1})
    build_cli(["fit", "--config", str(config), "--runs_root", str(folder / "runs"), "--run_name", "r"])
    return config, folder / "runs"


def _error(capsys, argv, entry=main) -> str:
    """The one stderr line of a refused command (exit status 2, no traceback)."""
    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.mark.parametrize("subcommand", ["test", "validate", "predict"])
def test_evaluating_last_of_a_mistyped_run_names_the_run_folder(tmp_path, store, capsys, subcommand):
    config = write_config(tmp_path / "c.yaml", store)
    (tmp_path / "runs" / "radar").mkdir(parents=True)
    error = _error(capsys, [subcommand, "--config", str(config), "--runs_root", str(tmp_path / "runs"),
                            "--run_name", "rader", "--ckpt_path", "last"])
    assert error == (f"nowcast: error: FileNotFoundError: --ckpt_path last: no checkpoint in "
                     f"{tmp_path}/runs/rader/checkpoints; the run folder {tmp_path}/runs/rader does not exist "
                     f"(runs in {tmp_path}/runs: radar); check --run_name and --runs_root, or pass the checkpoint file")
    assert not (tmp_path / "runs" / "rader").exists()


def test_evaluating_last_of_a_run_without_checkpoints_lists_what_it_holds(tmp_path, store, capsys):
    config = write_config(tmp_path / "c.yaml", store)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("{}")
    error = _error(capsys, ["test", "--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name",
                            "r", "--ckpt_path", "auto"])
    assert f"no checkpoint in {run}/hpc_ckpt_*.ckpt or {run}/checkpoints; the run folder {run} holds config.yaml;" \
        in error
    assert not (run / "test_metrics.json").exists()


def test_fit_again_refuses_and_restart_moves_the_old_checkpoints_aside(tmp_path, store, capsys, caplog):
    config = write_config(tmp_path / "c.yaml", store, trainer={"limit_val_batches": 1})
    common = ["--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name", "r"]
    run = tmp_path / "runs" / "r"
    with caplog.at_level(logging.WARNING, logger="nowcast_pl.resume"):
        build_cli(["fit", *common, "--ckpt_path", "last"])  # a first submission: nothing to resume yet
    assert f"--ckpt_path last: no checkpoint in {run}/checkpoints yet, training from scratch" in caplog.messages
    first = (run / "checkpoints" / "last.ckpt").read_bytes()

    error = _error(capsys, ["fit", *common])
    assert error == (f"nowcast: error: FileExistsError: run folder {run} already has checkpoints "
                     f"({run}/checkpoints/last.ckpt): resume with --ckpt_path last, start over with --restart "
                     "true, or choose a new --run_name")

    with caplog.at_level(logging.WARNING, logger="nowcast_pl.resume"):
        build_cli(["fit", *common, "--restart", "true", "--trainer.max_steps", "2"])
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]  # no last-v1.ckpt
    (aside,) = run.glob("replaced-*")
    assert f"--restart: moved 2 checkpoint and TensorBoard files of {run} to {aside}" in caplog.messages
    assert (aside / "checkpoints" / "last.ckpt").read_bytes() == first
    assert len(list(aside.glob("events.out.tfevents.*"))) == 1
    assert load_checkpoint(final_checkpoint(run))["global_step"] == 2  # what --ckpt_path last now resumes
    assert [s for s, _ in scalars(run, "train/loss")] == [0, 1]  # the replaced run's events are not mixed in
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["restart"] is False and saved["ckpt_path"] is None  # reusing config.yaml starts nothing over


def test_checkpoint_of_another_model_class_is_refused_naming_both(tmp_path, trained, store, capsys):
    _, runs = trained
    raindiff = write_config(tmp_path / "rd.yaml", store, model=RAINDIFF, model_args=TINY_RAINDIFF)
    checkpoint = runs / "r" / "checkpoints" / "last.ckpt"
    error = _error(capsys, ["test", "--config", str(raindiff), "--runs_root", str(tmp_path / "runs"),
                            "--run_name", "x", "--ckpt_path", str(checkpoint)])
    assert error == (f"nowcast: error: CheckpointError: {checkpoint} holds a SimVPTask "
                     f"(nowcast_pl.models.simvp.SimVPTask) but the config's model is RainDiffTask ({RAINDIFF}); use "
                     "the config the checkpoint was trained with (<run>/config.yaml) or a checkpoint of the configured "
                     "model")
    assert not (tmp_path / "runs" / "x" / "config.yaml").exists()


def test_checkpoint_saved_before_the_model_folders_is_of_the_same_class(tmp_path, trained, capsys):
    config, runs = trained
    checkpoint = load_checkpoint(runs / "r" / "checkpoints" / "last.ckpt")
    checkpoint["hyper_parameters"]["_class_path"] = "nowcast_pl.tasks.SimVPTask"  # its path until the move
    torch.save(checkpoint, tmp_path / "old.ckpt")
    for name, path in [("old", tmp_path / "old.ckpt"), ("new", runs / "r" / "checkpoints" / "last.ckpt")]:
        main(["test", "--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name", name,
              "--ckpt_path", str(path)])
    scores = [json.loads((tmp_path / "runs" / name / "test_metrics.json").read_text()) for name in ("old", "new")]
    assert "csi@20dBZ" in scores[0] and scores[0] == scores[1]


@pytest.mark.parametrize("ckpt_path", ["last", "file"])
def test_checkpoint_of_another_architecture_names_the_settings(trained, capsys, ckpt_path):
    config, runs = trained
    checkpoint = runs / "r" / "checkpoints" / "last.ckpt"
    error = _error(capsys, ["test", "--config", str(config), "--runs_root", str(runs), "--run_name", "r",
                            "--ckpt_path", "last" if ckpt_path == "last" else str(checkpoint),
                            "--model.init_args.hid_S", "16", "--model.init_args.N_T", "3"])
    assert error == (f"nowcast: error: CheckpointError: {checkpoint} does not fit the configured SimVPTask: "
                     "model.init_args.hid_S is 16 in the config but 8 in the checkpoint; model.init_args.N_T is 3 "
                     "in the config but 2 in the checkpoint; set them to the checkpoint's values (or use the config "
                     "it was trained with)")


def test_evaluation_and_run_time_settings_may_differ_from_the_checkpoint(trained):
    config, runs = trained
    checkpoint = runs / "r" / "checkpoints" / "last.ckpt"
    build_cli(["test", "--config", str(config), "--runs_root", str(runs), "--run_name", "other",
               "--ckpt_path", str(checkpoint), "--model.init_args.thresholds", "[10.0]",
               "--model.init_args.eval_members", "3"])
    scores = json.loads((runs / "other" / "test_metrics.json").read_text())
    assert "csi@10dBZ" in scores and "csi@20dBZ" not in scores  # the config's thresholds, not the checkpoint's
    saved = yaml.safe_load((runs / "other" / "config.yaml").read_text())
    assert saved["model"]["init_args"]["thresholds"] == [10.0] and saved["ckpt_path"] == str(checkpoint)


def _unreadable(kind, folder, checkpoint):
    path = folder / f"{kind}.ckpt"
    if kind == "random_bytes":
        path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                       dtype=torch.uint8).numpy().tobytes())
    elif kind == "truncated":
        path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    elif kind == "bare_state_dict":
        torch.save(torch.nn.Conv2d(1, 1, 3).state_dict(), path)
    else:  # an object the safe loader refuses to unpickle
        torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1.0)}, path)
    return path


@pytest.mark.parametrize("kind", ["random_bytes", "truncated", "bare_state_dict", "unsafe_object"])
@pytest.mark.parametrize("command", ["test", "fit", "convert"])
def test_unreadable_checkpoint_is_one_line_without_unsafe_advice(tmp_path, trained, capsys, kind, command):
    config, runs = trained
    path = _unreadable(kind, tmp_path, runs / "r" / "checkpoints" / "last.ckpt")
    if command == "convert":
        error = _error(capsys, ["raindiff", str(path), str(tmp_path / "out.ckpt")], entry=convert_main)
        assert not (tmp_path / "out.ckpt").exists()
    else:
        error = _error(capsys, [command, "--config", str(config), "--runs_root", str(tmp_path / "runs"),
                                "--run_name", "x", "--ckpt_path", str(path)])
    expected = {
        "random_bytes": "is not a complete torch file",
        "truncated": "is not a complete torch file",
        "bare_state_dict": ("it has no 'model.init_conv.weight'" if command == "convert" else
                            "is a torch file but not a Lightning checkpoint (it holds ['bias', 'weight'], no "
                            "'state_dict')"),
        "unsafe_object": ("holds Python objects other than tensors and plain containers; nowcast reads "
                          "checkpoints only with torch's safe loader"),
    }[kind]
    assert str(path) in error and expected in error


def test_fit_does_not_resume_a_weights_only_checkpoint(tmp_path, trained, capsys):
    config, runs = trained
    weights = load_checkpoint(runs / "r" / "checkpoints" / "last.ckpt")
    path = tmp_path / "weights.ckpt"
    torch.save({k: weights[k] for k in ("state_dict", "hyper_parameters", "global_step")}, path)
    error = _error(capsys, ["fit", "--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name",
                            "x", "--ckpt_path", str(path)])
    assert error.endswith(f"{path} holds weights only (no optimiser or loop state), so fit cannot resume it; "
                          "evaluate it with nowcast test/validate/predict --ckpt_path")


def test_resume_with_last_logs_every_tensorboard_step_once(tmp_path, store):
    config = write_config(tmp_path / "c.yaml", store, trainer={"limit_val_batches": 1})
    common = ["--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name", "r"]
    last = tmp_path / "runs" / "r" / "checkpoints" / "last.ckpt"
    build_cli(["fit", *common])  # 7 steps per epoch
    end_of_epoch_1 = shutil.copy(last, tmp_path / "epoch1.ckpt")
    build_cli(["fit", *common, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    # The run is cut after logging steps 7-13 but before writing their checkpoint: last.ckpt is still step 7.
    shutil.copy(end_of_epoch_1, last)
    build_cli(["fit", *common, "--trainer.max_epochs", "3", "--ckpt_path", "last"])
    assert load_checkpoint(last)["global_step"] == 21
    assert logged_steps(tmp_path / "runs" / "r", "train/loss") == list(range(21))
    assert yaml.safe_load((tmp_path / "runs" / "r" / "config.yaml").read_text())["ckpt_path"] == "last"


def test_fresh_start_after_a_run_that_died_before_its_first_checkpoint_logs_every_step_once(tmp_path, store):
    config = write_config(tmp_path / "c.yaml", store, trainer={"limit_val_batches": 1})
    common = ["--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name", "r"]
    run = tmp_path / "runs" / "r"
    build_cli(["fit", *common, "--trainer.max_steps", "3"])
    shutil.rmtree(run / "checkpoints")  # it logged steps 0-2 and died before writing a checkpoint
    died = sorted(p.name for p in run.glob("events.out.tfevents.*"))
    build_cli(["fit", *common, "--ckpt_path", "auto"])  # the requeued job starts from scratch
    assert logged_steps(run, "train/loss") == list(range(7))
    assert sorted(p.name for p in run.glob("replaced-*/events.out.tfevents.*")) == died != []


def logged_steps(run_dir, tag: str) -> list[int]:
    """Steps of ``tag`` in every events file of ``run_dir``, in writing order, less those a purge marker drops.

    A resumed run with ``purge_step`` writes a ``SessionLog.START`` event at that step, telling readers to drop
    the earlier files' events from that step on. TensorBoard's EventAccumulator (``scalars``) also drops events
    of a tag whose step goes backwards, which would hide a missing purge, so the events are read raw here.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto.event_pb2 import SessionLog

    steps: list[int] = []
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                steps = [s for s in steps if s < event.step]
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps


def test_checkpoint_without_saved_settings_names_the_tensors_that_differ(tmp_path, trained, capsys):
    config, runs = trained
    saved = load_checkpoint(runs / "r" / "checkpoints" / "last.ckpt")
    path = tmp_path / "no_settings.ckpt"
    torch.save({k: v for k, v in saved.items() if k != "hyper_parameters"}, path)
    error = _error(capsys, ["test", "--config", str(config), "--runs_root", str(tmp_path / "runs"), "--run_name",
                            "x", "--ckpt_path", str(path), "--model.init_args.N_T", "3"])
    assert error.startswith(f"nowcast: error: CheckpointError: {path} does not fit the configured SimVPTask (it "
                            "saves no differing settings): missing 36 (net.translator.decoder.2.branches.0.0.bias, ")
    assert "; unexpected 0; other shapes 16 (net.translator.decoder.1.branches.0.0.bias, " in error
    assert error.endswith("); use the config it was trained with")
