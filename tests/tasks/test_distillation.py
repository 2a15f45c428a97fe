"""Progressive distillation as a training task (nowcast_pl/tasks/distillation.py), on a tiny RainDiff with two
residual segments: a stage brings the student closer to its teacher's two steps, resume mid-stage is exact,
the student's ensembles keep the contract, and bad settings get one line."""

import pytest
import torch

from nowcast_pl.checkpoints import CheckpointError
from nowcast_pl.cli import build_cli, main
from nowcast_pl.models.raindiff import RainDiffTask
from nowcast_pl.tasks.distillation import RECORD, check_teacher_class
from tests.helpers.cli import write_config
from tests.helpers.scaleout import (
    assert_same_training_state,
    fake_slurm_env,
    final_checkpoint,
    load_checkpoint,
    signal_config,
)
from tests.helpers.stores import write_moving_store

TASK = "nowcast_pl.models.raindiff.RainDiffTask"
ARCH = {"dim": 8, "dim_mults": [1, 2], "hid_S": 8, "hid_T": 16, "N_T": 2, "timesteps": 100}
TINY = ARCH | {"sampling_steps": 2, "thresholds": [20.0, 35.0], "warmup_steps": 0, "schedule": "constant",
               "lr": 1e-3, "panel_every_n_val_steps": 0}
DISTIL = ["--model.init_args.distill_teacher_steps", "8", "--model.init_args.distill_student_steps", "2",
          "--model.init_args.distill_stage_steps", "2", "--trainer.max_steps", "4"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("distil")


@pytest.fixture(scope="module")
def config(folder):
    store = write_moving_store(folder / "s.zarr", n_events=6, frames=12, size=16)
    return write_config(folder / "c.yaml", store, model=TASK, model_args=TINY,
                        trainer={"max_steps": 2, "limit_val_batches": 0, "limit_test_batches": 1})


def _args(folder, config, run):
    # in_frames 2 -> out_frames 4: two segments, the second conditioned on the first
    return ["--config", str(config), "--runs_root", str(folder / "runs"), "--run_name", run,
            "--data.init_args.in_frames", "2"]


@pytest.fixture(scope="module")
def teacher(folder, config):
    build_cli(["fit", *_args(folder, config, "teacher"), "--model.init_args.ema_decay", "0.5"])
    return final_checkpoint(folder / "runs/teacher")


@pytest.fixture(scope="module")
def student(folder, config, teacher):
    build_cli(["fit", *_args(folder, config, "student"), *DISTIL, "--model.init_args.teacher_checkpoint",
               str(teacher)])
    return final_checkpoint(folder / "runs/student")


def _task(teacher_checkpoint=None, **settings):
    return RainDiffTask(in_frames=2, out_frames=4, **TINY | settings, teacher_checkpoint=teacher_checkpoint,
                        distill_teacher_steps=8, distill_student_steps=2, distill_stage_steps=2)


def test_a_stage_lowers_the_students_distance_to_the_teachers_two_steps(teacher):
    torch.manual_seed(0)
    task = _task(str(teacher))
    task.distillation.initialise(task)
    task.configure_model()
    task.eval()
    batch = {"inputs": torch.rand(2, 2, 1, 16, 16), "targets": torch.rand(2, 4, 1, 16, 16)}

    def distance():
        torch.manual_seed(1)  # the same times and noises every time
        with torch.no_grad():
            return float(task.distillation.loss(task, batch, global_step=0)["loss"])

    before = distance()
    optimizer = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    assert {n for n, p in task.named_parameters() if p.requires_grad} == {
        n for n, _ in task.named_parameters() if n.startswith("net.denoiser.")}
    for _ in range(9):
        optimizer.zero_grad()
        task.distillation.loss(task, batch, global_step=0)["loss"].backward()
        optimizer.step()
    assert distance() < 0.85 * before  # 0.75 measured


def test_the_student_starts_from_the_teachers_ema_weights(teacher):
    task = _task(str(teacher))
    task.distillation.initialise(task)
    state = load_checkpoint(teacher)["state_dict"]
    torch.testing.assert_close(task.net.denoiser.stem.weight, state["ema.net__denoiser__stem__weight"])
    assert not torch.equal(state["ema.net__denoiser__stem__weight"], state["net.denoiser.stem.weight"])


def test_the_distilled_checkpoint_records_the_steps_reached_and_the_teacher(student):
    checkpoint = load_checkpoint(student)
    assert checkpoint["global_step"] == 4
    record = checkpoint[RECORD]
    assert (record["teacher_steps"], record["student_steps"], record["reached_steps"]) == (8, 2, 2)
    assert not any(key.startswith("distill") for key in checkpoint["state_dict"])
    # the last stage's teacher is the student at the end of the first stage, not the final student
    teacher_weight = record["teacher_state"]["stem.weight"]
    assert not torch.equal(teacher_weight, checkpoint["state_dict"]["net.denoiser.stem.weight"])


def test_resume_mid_stage_equals_the_uninterrupted_run(folder, config, teacher, student, monkeypatch):
    args = [*_args(folder, config, "cut"), *DISTIL, "--model.init_args.teacher_checkpoint", str(teacher),
            "--checkpoint_every_n_steps", "2", "--ckpt_path", "auto"]
    fake_slurm_env(monkeypatch)
    monkeypatch.setattr("nowcast_pl.callbacks.preemption.PreemptionCheckpoint._requeue", lambda self: None)
    with pytest.raises(SystemExit):  # preempted in the middle of the second stage
        build_cli(["fit", *args, "--config", str(signal_config(folder, 3))])
    assert load_checkpoint(folder / "runs/cut/hpc_ckpt_1.ckpt")["global_step"] == 3
    build_cli(["fit", *args])
    resumed, straight = load_checkpoint(final_checkpoint(folder / "runs/cut")), load_checkpoint(student)
    assert_same_training_state(resumed, straight)
    for name, value in straight[RECORD]["teacher_state"].items():
        torch.testing.assert_close(resumed[RECORD]["teacher_state"][name], value, atol=1e-6, rtol=0)


def test_a_students_ensemble_is_reproducible_and_batch_independent(student):
    task = _task(None)
    task.on_load_checkpoint(checkpoint := load_checkpoint(student))
    task.load_state_dict(checkpoint["state_dict"])
    task.eval()
    inputs = torch.rand(3, 2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        together = task.sample_members(inputs, 3, windows=torch.tensor([5, 6, 7]))
        task.member_chunk = 1
        alone = task.sample_members(inputs[1:2], 3, windows=torch.tensor([6]))
        again = task.sample_members(inputs, 3, windows=torch.tensor([5, 6, 7]))
    torch.testing.assert_close(alone[0], together[1])
    torch.testing.assert_close(again, together)
    assert not torch.equal(together[:, 0], together[:, 1])


def test_the_student_is_tested_through_the_cli_with_a_step_count_it_reached(folder, config, student, capsys):
    common = [*_args(folder, config, "student"), "--ckpt_path", str(student)]
    build_cli(["test", *common, "--model.init_args.sampling_steps", "4", "--model.init_args.eval_members", "2"])
    assert (folder / "runs/student/test_metrics.json").exists()
    with pytest.raises(SystemExit):
        main(["test", *common, "--model.init_args.sampling_steps", "1"])
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "nowcast: error: ValueError: this RainDiffTask checkpoint is a student distilled for DDIM with [2, 4, 8] "
        "steps, not ddim with 1; sample it with sampler ddim and one of those sampling_steps (--sampler, "
        "--sampling-steps in nowcast forecast; --model.init_args.sampler, --model.init_args.sampling_steps in "
        "nowcast test and predict)")


def test_nowcast_forecast_samples_a_student_with_the_steps_it_was_distilled_to(folder, student, capsys):
    import xarray as xr

    from nowcast_pl.forecasting import cli as forecast_cli
    from nowcast_pl.forecasting import load_forecaster

    assert (load_forecaster(student).sampling.sampler, load_forecaster(student).sampling.sampling_steps) == ("ddim", 2)
    assert load_forecaster(student, sampling_steps=4).sampling.sampling_steps == 4
    common = ["--checkpoint", str(student), "--store", str(folder / "s.zarr"), "--members", "2"]
    assert forecast_cli.main([*common, "--output", str(folder / "student.nc")]) == 0
    assert xr.open_dataset(folder / "student.nc").sizes["member"] == 2
    assert forecast_cli.main([*common, "--sampling-steps", "4", "--output", str(folder / "student4.nc")]) == 0
    assert forecast_cli.main([*common, "--sampling-steps", "1", "--output", str(folder / "student1.nc")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "nowcast forecast: error: this RainDiffTask checkpoint is a student distilled for DDIM with [2, 4, 8] "
        "steps, not ddim with 1; sample it with sampler ddim and one of those sampling_steps (--sampler, "
        "--sampling-steps in nowcast forecast; --model.init_args.sampler, --model.init_args.sampling_steps in "
        "nowcast test and predict)")


def test_a_teacher_without_a_diffusion_model_is_one_line(folder, config, teacher, capsys):
    checkpoint = load_checkpoint(teacher)
    checkpoint["hyper_parameters"]["_class_path"] = "nowcast_pl.models.simvp.SimVPTask"
    wrong = folder / "simvp.ckpt"
    torch.save(checkpoint, wrong)
    with pytest.raises(SystemExit):
        main(["fit", *_args(folder, config, "wrong"), *DISTIL, "--model.init_args.teacher_checkpoint", str(wrong)])
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"nowcast: error: CheckpointError: model.init_args.teacher_checkpoint {wrong} holds a SimVPTask, not a "
        "diffusion model; distil a checkpoint of a diffusion model")


def test_a_teacher_of_another_diffusion_model_is_refused(teacher):
    checkpoint = load_checkpoint(teacher)
    checkpoint["hyper_parameters"]["_class_path"] = "nowcast_pl.models.stldm.STLDMTask"
    with pytest.raises(CheckpointError, match=r"^model.init_args.teacher_checkpoint t.ckpt holds a STLDMTask "
                                              r"\(nowcast_pl.models.stldm.STLDMTask\) but the config's model is "
                                              r"RainDiffTask \(nowcast_pl.models.raindiff.task.RainDiffTask\)"):
        check_teacher_class(checkpoint, _task(), "t.ckpt")


@pytest.mark.parametrize(("settings", "message"), [
    ({"distill_teacher_steps": 6}, r"distill_teacher_steps=6 must be a power-of-two multiple \(>= 2\) of "
                                   r"distill_student_steps=2"),
    ({"distill_teacher_steps": 128}, "distill_teacher_steps=128 exceeds the timesteps=100 of RainDiffTask"),
    ({"distill_teacher_steps": 8, "teacher_guidance_scale": 1.0},
     "RainDiffTask is not trained with condition dropout: set model.init_args.teacher_guidance_scale to 0"),
])
def test_bad_schedules_are_one_line(settings, message):
    with pytest.raises(ValueError, match=message):
        RainDiffTask(in_frames=2, out_frames=4, **ARCH | {"thresholds": [20.0], "sampling_steps": 2,
                                                          "teacher_checkpoint": "t.ckpt", "distill_student_steps": 2}
                     | settings)
