"""The Python API: ``load_forecaster`` and ``forecast`` on NumPy arrays and DataArrays, in pysteps' conventions."""

import dataclasses
import subprocess
import sys
import tracemalloc

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import xarray as xr

import nowcast_pl
from nowcast_pl.data import RadarDataModule
from nowcast_pl.data.preparation import FramePreparation
from nowcast_pl.forecasting import forecast, load_forecaster
from nowcast_pl.forecasting.loading import recorded_preparation
from nowcast_pl.models.baselines import PersistenceTask
from nowcast_pl.models.simvp import SimVPTask
from tests.helpers.stores import write_moving_store
from tests.helpers.toy_diffusion import ToyDiffusionTask

SCORING = dict(thresholds=[20.0], protocol="pysteps")


def _persistence(units="dBZ", value_range=(0.0, 60.0), factor=2.0):
    model = PersistenceTask(in_frames=2, out_frames=3, value_range=value_range, units=units, **SCORING)
    model.frame_preparation = FramePreparation(value_range=value_range, units=units, time_step_minutes=5.0,
                                               tile=(8, 8), factor=(factor, factor), resize_method="area")
    return model


def _toy():
    torch.manual_seed(0)
    model = ToyDiffusionTask(in_frames=2, out_frames=3, value_range=(0.0, 60.0), units="dBZ", sampling_steps=3,
                             **SCORING).eval()
    model.frame_preparation = FramePreparation(value_range=(0.0, 60.0), units="dBZ", time_step_minutes=5.0,
                                               tile=(8, 8))
    return model


def test_numpy_input_gives_members_leads_y_x_in_its_units_with_nan_outside_coverage():
    precip = np.full((4, 30, 22), 30.0, np.float32)
    precip[:, :, :2] = np.nan  # no data in any frame: NaN out
    precip[:2, 5, 5] = np.nan  # no data in some frames only: forecast
    model = _persistence().train()
    out = forecast(model, precip, members=3, leads=2)
    assert model.training  # forecast runs in eval mode and gives the mode back
    assert out.shape == (3, 2, 30, 22) and out.dtype == np.float32
    assert np.isnan(out[..., :2]).all() and not np.isnan(out[..., 2:]).any()
    np.testing.assert_allclose(out[..., 3:], 30.0, atol=1e-4)  # a uniform field persists (resize 2x and back)


def test_working_memory_is_the_input_and_result_plus_a_tile_batch():
    precip = np.full((2, 300, 400), 30.0, np.float32)
    for factor in (1.0, 2.0):
        model = _persistence(factor=factor)
        tracemalloc.start()
        out = forecast(model, precip, tile_batch=4, tile_size=32)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # the result, the prepared input, the model-grid result when resized, a few frames in flight, 1 MiB
        frame = precip[0].nbytes
        bound = out.nbytes + precip.nbytes / factor**2 + (out.nbytes / factor**2 if factor > 1 else 0) + 3 * frame
        assert peak < bound + 2**20, (factor, peak, bound)


def test_an_input_of_another_grid_spacing_is_resized_to_the_model_pixel():
    model = _persistence(factor=2.0)  # a 1 km store at factor 2: 2 km model pixels
    model.frame_preparation = dataclasses.replace(model.frame_preparation, pixel_size_m=1000.0)
    precip = np.random.default_rng(0).uniform(0, 50, (2, 16, 16)).astype(np.float32)
    at_2km = {"unit": "dBZ", "transform": "dB", "xpixelsize": 2.0, "cartesian_unit": "km"}
    np.testing.assert_allclose(forecast(model, precip, metadata=at_2km)[0, 0], precip[-1], atol=1e-4)  # factor 1
    at_1km = forecast(model, precip, metadata=at_2km | {"xpixelsize": 1000.0, "cartesian_unit": "m"})
    assert np.abs(at_1km[0, 0] - precip[-1]).mean() > 1.0  # factor 2: averaged and interpolated back
    np.testing.assert_array_equal(at_1km, forecast(model, precip))  # the recorded factor when spacing is unknown


def test_units_that_convert_are_converted_both_ways_and_others_refused():
    model = _persistence(units="mm h-1", value_range=(0.0, 10.0), factor=1.0)
    precip = np.full((2, 16, 16), 1e-6, np.float32)  # m/s = 3.6 mm/h
    out = forecast(model, precip, metadata={"unit": "m/s", "transform": None})
    np.testing.assert_allclose(out, 1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"precip is in 'dBZ' but the model forecasts 'mm h-1'; convert it first"):
        forecast(model, precip, metadata={"unit": "dBZ"})
    with pytest.raises(ValueError, match="precip is transformed \\(metadata transform='dB'\\)"):
        forecast(model, precip, metadata={"unit": "mm/h", "transform": "dB"})
    dbz = _persistence(factor=1.0)
    np.testing.assert_allclose(forecast(dbz, np.full((2, 8, 8), 30.0), metadata={"unit": "dBZ", "transform": "dB"}),
                               30.0, atol=1e-4)  # pysteps' decibel reflectivity
    with pytest.raises(ValueError, match="unit='dBZ' with transform=None is linear reflectivity Z in pysteps"):
        forecast(dbz, precip, metadata={"unit": "dBZ", "transform": None})


def test_bad_calls_are_one_line_errors():
    model, precip = _persistence(), np.zeros((4, 16, 16), np.float32)
    with pytest.raises(ValueError, match="precip has 1 frames; the model needs the last 2"):
        forecast(model, precip[:1])
    with pytest.raises(ValueError, match=r"leads must be in \[1, 3\]"):
        forecast(model, precip, leads=4)
    with pytest.raises(ValueError, match=r"precip must be \(t, y, x\) frames"):
        forecast(model, precip[0])
    with pytest.raises(ValueError, match="unknown options \\['steps'\\]"):
        forecast(model, precip, steps=3)
    with pytest.raises(ValueError, match="is not a diffusion task; it takes no \\['sampler'\\]"):
        forecast(model, precip, sampler="ddim")
    bare = PersistenceTask(in_frames=2, out_frames=3, **SCORING)
    with pytest.raises(ValueError, match="records no frame recipe .* pass tile_size="):
        forecast(bare, precip)
    assert forecast(bare, precip, tile_size=8).shape == (1, 3, 16, 16)


def test_data_array_in_data_array_out_with_coordinates():
    times = np.datetime64("2024-05-01T12:00") + np.arange(3) * np.timedelta64(5, "m")
    precip = xr.DataArray(np.full((3, 16, 20), 25.0, np.float32), dims=("time", "y", "x"),
                          coords={"time": times, "y": np.arange(16) * 1e3, "x": np.arange(20) * 1e3},
                          attrs={"units": "dBZ"})
    out = forecast(_persistence(), precip, members=2)
    assert out.dims == ("member", "lead_time", "y", "x") and out.shape == (2, 3, 16, 20)
    np.testing.assert_array_equal(out["x"], precip["x"])
    assert out["time"].values[0] == np.datetime64("2024-05-01T12:15") and out.attrs["units"] == "dBZ"
    assert out["lead_time"].values[-1] == np.timedelta64(15, "m")


def test_diffusion_forecast_is_a_function_of_seed_and_member_and_takes_sampler_options():
    model, precip = _toy(), np.random.default_rng(0).uniform(0, 50, (2, 14, 14)).astype(np.float32)  # 2 x 2 tiles
    first = forecast(model, precip, members=2, seed=7, tile_batch=8)
    np.testing.assert_array_equal(first, forecast(model, precip, members=2, seed=7, tile_batch=8))
    single = forecast(model, precip, members=1, seed=7, tile_batch=3)  # member 0 alone, other batches
    np.testing.assert_allclose(single[0], first[0], atol=1e-3)
    assert np.abs(first[0] - first[1]).mean() > 0.1
    calls = model.network_calls
    other_seed = forecast(model, precip, members=1, seed=8, sampling_steps=1, tile_batch=8)
    assert np.abs(first[0] - other_seed[0]).mean() > 0.1
    assert model.network_calls == calls + 1 and model.sampling.sampling_steps == 3  # restored after the call
    with pytest.raises(ValueError, match=r"sampling_steps must be in \[1, timesteps=50\]"):
        forecast(model, precip, sampling_steps=60)


def test_load_forecaster_reads_the_recipe_a_fit_recorded(tmp_path):
    store = write_moving_store(tmp_path / "s.zarr", n_events=2, frames=8, size=16)
    dm = RadarDataModule(str(store), in_frames=2, out_frames=2, value_range=(-10.0, 60.0), frame_size=8,
                         resize_method="area", splits={"train": {}}, batch_size=2)
    torch.manual_seed(0)
    model = SimVPTask(in_frames=2, out_frames=2, hid_S=8, hid_T=16, N_S=2, N_T=2, value_range=(-10.0, 60.0),
                      **SCORING)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, limit_val_batches=0,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="does not record its task class .* pass task_class="):
        load_forecaster(tmp_path / "plain.ckpt")
    assert load_forecaster(tmp_path / "plain.ckpt", task_class=SimVPTask).frame_preparation == dm.frame_preparation()
    # What LightningCLI records (here a class path from before the model folders, which load_forecaster maps).
    model.hparams.update(_class_path="nowcast_pl.tasks.SimVPTask",
                         _instantiator="lightning.pytorch.cli.instantiate_module")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    trainer.save_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    loaded = load_forecaster(tmp_path / "run")
    assert loaded.frame_preparation == dm.frame_preparation()
    assert loaded.frame_preparation.factor == (2.0, 2.0) and loaded.frame_preparation.tile == (8, 8)
    precip = np.random.default_rng(1).uniform(0, 50, (2, 24, 40)).astype(np.float32)
    model.eval().frame_preparation = dm.frame_preparation()
    np.testing.assert_array_equal(forecast(loaded, precip), forecast(model, precip))
    assert forecast(loaded, precip).shape == (1, 2, 24, 40)
    with pytest.raises(ValueError, match="without checkpoints/last.ckpt"):
        load_forecaster(tmp_path)


def test_a_checkpoint_without_a_recipe_gets_it_from_its_data_settings_and_store(tmp_path):
    store = write_moving_store(tmp_path / "s.zarr", n_events=1, frames=6, size=16)
    model = _persistence()
    checkpoint = {"datamodule_hyper_parameters": {"store": str(store), "frame_size": 8, "resize_method": "area"}}
    recipe = recorded_preparation(checkpoint, model)
    assert recipe.factor == (2.0, 2.0) and recipe.tile == (8, 8) and recipe.resize_method == "area"
    checkpoint["datamodule_hyper_parameters"]["store"] = str(tmp_path / "moved.zarr")
    assert recorded_preparation(checkpoint, model) is None


def test_package_exports_forecast_lazily():
    assert nowcast_pl.forecast is forecast and nowcast_pl.load_forecaster is load_forecaster
    code = "import sys, nowcast_pl; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
