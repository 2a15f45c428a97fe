import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr

from nowcast_pl.cli import build_cli, main
from tests.helpers.cli import write_config


def _run(*args):
    build_cli(list(args))


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_fit_test_predict_write_run_folder_metrics_and_forecasts(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store)
    common = ["--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "r"]
    _run("fit", *common)
    run = tmp_path / "runs" / "r"
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / "config.yaml").exists()
    _run("test", *common, "--ckpt_path", "last")
    scores = json.loads((run / "test_metrics.json").read_text())
    assert {"csi@20dBZ", "csi@35dBZ/lead_04", "hss_m", "mse", "ssim"} <= set(scores)
    assert 0.0 <= scores["csi@20dBZ"] <= 1.0 and (run / "test_panel.png").stat().st_size > 10_000
    _run("predict", *common, "--ckpt_path", "last")  # ForecastWriter is a default callback
    forecast = xr.open_zarr(run / "forecast.zarr", consolidated=False)["forecast"]
    assert forecast.dims == ("init_time", "member", "lead_time", "y", "x")
    assert forecast.attrs["units"] == "dBZ" and forecast.sizes["init_time"] == 9
    assert forecast["lead_time"].values.astype("timedelta64[m]").astype(int).tolist() == [5, 10, 15, 20]
    values = forecast.values
    assert np.isfinite(values).all() and values.min() >= -10.0 and values.max() <= 60.0
    assert forecast["init_time"].values[0] == np.datetime64("2020-01-05T00:20")


def test_print_config_resolves_links(tmp_path, store, capsys):
    cfg = write_config(tmp_path / "c.yaml", store)
    with pytest.raises(SystemExit):
        _run("fit", "--config", str(cfg), "--print_config")
    printed = capsys.readouterr().out
    assert "class_path: nowcast_pl.models.simvp.SimVPTask" in printed and "in_frames: 4" in printed


def test_a_normal_command_prints_no_lightningcli_args_warning(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store)
    done = subprocess.run([sys.executable, "-m", "nowcast_pl", "fit", "--config", str(cfg), "--print_config"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "class_path: nowcast_pl.models.simvp.SimVPTask" in done.stdout, done.stderr[-2000:]
    assert "LightningCLI's args parameter" not in done.stderr


def test_resume_from_last_equals_uninterrupted_training(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, model_args={"schedule_steps": 8, "warmup_steps": 2})
    base = ["--config", str(cfg), "--runs_root", str(tmp_path / "runs")]
    _run("fit", *base, "--run_name", "straight", "--trainer.max_epochs", "2")
    _run("fit", *base, "--run_name", "resumed", "--trainer.max_epochs", "1")
    once = _state(tmp_path / "runs/resumed/checkpoints/last.ckpt")
    _run("fit", *base, "--run_name", "resumed", "--trainer.max_epochs", "2", "--ckpt_path", "last")
    straight = _state(tmp_path / "runs/straight/checkpoints/last.ckpt")
    resumed = _state(tmp_path / "runs/resumed/checkpoints/last.ckpt")
    assert straight.keys() == resumed.keys()
    assert any(not torch.equal(once[k], resumed[k]) for k in once), "the resumed run did not train"
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], atol=1e-6, rtol=0)
    steps = [torch.load(tmp_path / f"runs/{r}/checkpoints/last.ckpt", weights_only=False)["global_step"]
             for r in ("straight", "resumed")]
    assert steps[0] == steps[1] == 14  # 15 training windows, batch 2, drop_last: 7 steps per epoch


def test_bf16_mixed_precision_trains_on_cpu(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, trainer={"precision": "bf16-mixed", "limit_val_batches": 1})
    _run("fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "bf16")
    state = _state(tmp_path / "runs/bf16/checkpoints/last.ckpt")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.init_args.hid_SS", "4"], "hid_SS"),
        (["--data.init_args.store", "/nonexistent/store.zarr"], "no radar store at /nonexistent/store.zarr"),
        (["--data.init_args.in_frames", "10"], "no window of 14 frames"),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path, store, capsys, extra, message):
    cfg = write_config(tmp_path / "c.yaml", store)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_store_of_the_wrong_schema_is_rejected_with_the_field(tmp_path, store, capsys):
    import zarr

    bad = tmp_path / "bad.zarr"
    group = zarr.open_group(str(bad), mode="w")
    group.attrs["schema"] = "something-else"
    cfg = write_config(tmp_path / "c.yaml", bad)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs")])
    assert "attribute 'schema' is 'something-else'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.multiprocess
def test_real_ddp_through_the_cli(tmp_path, store):
    cfg = write_config(tmp_path / "c.yaml", store, trainer={"devices": 2, "strategy": "ddp"})
    cmd = [sys.executable, "-m", "nowcast_pl", "fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"),
           "--run_name", "ddp"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed_backend=gloo" in done.stderr + done.stdout
    assert (tmp_path / "runs/ddp/checkpoints/last.ckpt").exists()


def test_fitting_persistence_is_a_clear_error(tmp_path, store, capsys):
    cfg = write_config(tmp_path / "c.yaml", store, model="nowcast_pl.models.baselines.PersistenceTask")
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs")])
    assert "PersistenceTask has nothing to fit; run `nowcast validate` or `nowcast test`" in capsys.readouterr().err
