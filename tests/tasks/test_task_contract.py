"""The stochastic-forecast contract of NowcastTask: ensembles reproducible per window and member, run-time
sampling settings, one and two processes, and the file callbacks."""

import json

import numpy as np
import pytest
import torch
import xarray as xr

from nowcast_pl.cli import build_cli, main
from nowcast_pl.data.forecast_store import open_forecast, partial_path
from nowcast_pl.models.simvp import SimVPTask
from tests.helpers.cli import write_config
from tests.helpers.toy_diffusion import ToyDiffusionTask

TOY = "tests.helpers.toy_diffusion.ToyDiffusionTask"
TOY_ARGS = {"sampling_steps": 4, "eval_members": 2, "predict_members": 3, "lr": 1e-3,
            "panel_every_n_val_steps": 0}


def _toy(**kwargs):
    kwargs = {"sampling_steps": 3, "thresholds": [20.0]} | kwargs
    return ToyDiffusionTask(in_frames=4, out_frames=4, value_range=(-10.0, 60.0), **kwargs)


def _inputs(batch=3, seed=0):
    return torch.rand(batch, 4, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_members_of_a_window_do_not_depend_on_batch_or_chunking():
    torch.manual_seed(0)
    task = _toy(member_chunk=4).eval()
    inputs, windows = _inputs(), torch.tensor([7, 8, 9])
    with torch.no_grad():
        batched = task.sample_members(inputs, 3, windows=windows)
        task.member_chunk = 1
        alone = task.sample_members(inputs[1:2], 3, windows=windows[1:2])
        again = task.sample_members(inputs, 3, windows=windows)
    assert batched.shape == (3, 3, 4, 1, 16, 16) and 0 <= batched.min() and batched.max() <= 1
    torch.testing.assert_close(alone[0], batched[1], atol=1e-5, rtol=0)
    assert torch.equal(again, batched)
    assert not torch.allclose(batched[:, 0], batched[:, 1])


def test_sampling_seed_and_generator_select_the_ensemble():
    torch.manual_seed(0)
    task = _toy().eval()
    with torch.no_grad():
        first = task.sample_members(_inputs(1), 2)
        task.sampling_seed = 1
        other = task.sample_members(_inputs(1), 2)
        from_generator = [task.sample_members(_inputs(1), 2, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert not torch.allclose(first, other)
    assert torch.equal(*from_generator) and not torch.allclose(from_generator[0], other)


def test_deterministic_models_forecast_once_and_repeat_the_view(monkeypatch):
    task = SimVPTask(in_frames=4, out_frames=4, hid_S=8, hid_T=16, N_S=2, N_T=2, thresholds=[20.0]).eval()
    calls = []
    original = task.forecast
    monkeypatch.setattr(task, "forecast", lambda x: calls.append(1) or original(x) * 3)
    with torch.no_grad():
        members = task.sample_members(_inputs(2), 5)
    assert len(calls) == 1 and members.shape == (2, 5, 4, 1, 16, 16)
    assert members.max() <= 1.0 and members.min() >= 0.0  # clamped once, by the base
    assert members.stride(1) == 0 and task.effective_members(5) == 1


def test_member_settings_are_validated():
    for name in ("eval_members", "predict_members", "member_chunk"):
        with pytest.raises(ValueError, match=f"model.init_args.{name} must be >= 1"):
            _toy(**{name: 0})
    with pytest.raises(ValueError, match="sampler='heun' is not one of"):
        _toy(sampler="heun")
    with pytest.raises(ValueError, match="guidance_scale"):
        _toy(guidance_scale=1.0)


def test_runtime_settings_are_not_hyperparameters():
    task = _toy(eval_members=4, sampler="dpmpp_2m")
    assert not set(task.runtime_settings) & set(task.hparams)
    assert task.eval_members == 4 and task.sampling.sampler == "dpmpp_2m" and task.hparams.timesteps == 50


def test_test_with_a_checkpoint_file_samples_with_the_command_line_steps(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, model=TOY, model_args=TOY_ARGS,
                       trainer={"max_steps": 2, "limit_val_batches": 1})
    common = ["--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "toy"]
    build_cli(["fit", *common])
    ckpt = tmp_path / "runs/toy/checkpoints/last.ckpt"
    saved = torch.load(ckpt, weights_only=False)["hyper_parameters"]
    assert "sampling_steps" not in saved and "eval_members" not in saved
    cli = build_cli(["test", *common, "--ckpt_path", str(ckpt), "--model.init_args.sampling_steps", "7"])
    batches = len(cli.datamodule.test_dataloader())
    assert cli.model.sampling.sampling_steps == 7
    assert cli.model.network_calls == 7 * batches  # both members in one chunk: one call per step and batch
    scores = json.loads((tmp_path / "runs/toy/test_metrics.json").read_text())
    assert {"csi@20dBZ", "ens_mean/csi@20dBZ", "ens_mean/mse"} <= set(scores)


def test_forecasts_equal_across_one_and_two_processes(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, model=TOY, model_args=TOY_ARGS,
                       trainer={"max_steps": 1, "limit_val_batches": 0})
    common = ["--config", str(cfg), "--runs_root", str(tmp_path / "runs")]
    build_cli(["fit", *common, "--run_name", "fit"])
    ckpt = str(tmp_path / "runs/fit/checkpoints/last.ckpt")
    build_cli(["predict", *common, "--run_name", "one", "--ckpt_path", ckpt, "--data.init_args.eval_batch_size", "3"])
    build_cli(["predict", *common, "--run_name", "two", "--ckpt_path", ckpt, "--trainer.devices", "2",
               "--trainer.strategy", "ddp_spawn", "--data.init_args.eval_batch_size", "1"])
    one, two = (xr.open_zarr(tmp_path / f"runs/{r}/forecast.zarr", consolidated=False)["forecast"].values
                for r in ("one", "two"))
    assert one.shape[1] == 3 and np.isfinite(one).all()
    np.testing.assert_allclose(two, one, atol=1e-5 * 70, rtol=0)  # 1e-5 in [0, 1] units; store in dBZ
    # Rank 0 alone marked the store complete and renamed it into place, after both ranks had written.
    assert open_forecast(tmp_path / "runs/two/forecast.zarr").attrs["complete"] is True
    assert not partial_path(tmp_path / "runs/two/forecast.zarr").exists()


def test_validate_alone_scores_whatever_the_epoch_schedule(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, model_args={"val_metrics_every_n_epochs": 5})
    cli = build_cli(["validate", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "v"])
    assert "val/csi@20dBZ" in cli.trainer.callback_metrics


def test_invalid_members_is_a_one_line_config_error(tmp_path, store, capsys):
    cfg = write_config(tmp_path / "c.yaml", store, model_args={"eval_members": 0})
    with pytest.raises(SystemExit):
        main(["test", "--config", str(cfg), "--runs_root", str(tmp_path / "runs")])
    assert "model.init_args.eval_members must be >= 1" in capsys.readouterr().err
