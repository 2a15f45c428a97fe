"""``nowcast forecast`` on the real FMI and BoM samples with tiny checkpoints trained here: the files it writes
(xarray, pysteps), the Python API giving the same forecast, and its one-line refusals."""

import datetime as dt

import numpy as np
import pytest
import xarray as xr
import yaml
from PIL import Image
from pyproj import CRS

from nowcast_pl.cli import build_cli
from nowcast_pl.cli import main as nowcast
from nowcast_pl.forecasting import forecast, load_forecaster
from nowcast_pl.forecasting.inputs import ModelInputs
from nowcast_pl.forecasting.raw_inputs import read_raw_inputs
from nowcast_pl.pysteps_import import import_pysteps
from tests.helpers.cli import TINY_SIMVP


def tiny_fit(tmp_path, store, *, name, split_day, value_range):
    """A SimVP of a few kB fitted for one step on 8 x 8 frames of ``store``; its run folder."""
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "max_steps": 1, "limit_val_batches": 0, "num_sanity_val_steps": 0,
                    "enable_progress_bar": False, "enable_model_summary": False, "logger": False},
        "model": {"class_path": "nowcast_pl.models.simvp.SimVPTask", "init_args": TINY_SIMVP | {"thresholds": [1.0]}},
        "data": {"class_path": "nowcast_pl.data.RadarDataModule", "init_args": {
            "store": str(store), "in_frames": 4, "out_frames": 2, "value_range": value_range, "frame_size": 8,
            "resize_method": "area", "batch_size": 1, "max_missing_frames": 1,
            "splits": {"train": {"until": split_day}, "val": {"after": split_day}}}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    build_cli(["fit", "--config", str(path), "--runs_root", str(tmp_path), "--run_name", name])
    return tmp_path / name


@pytest.fixture(scope="module")
def fmi_run(tmp_path_factory, fmi_sample_store):
    return tiny_fit(tmp_path_factory.mktemp("fmi_run"), fmi_sample_store, name="fmi", split_day="2017-01-01",
                    value_range=[-10.0, 60.0])


@pytest.fixture(scope="module")
def bom_run(tmp_path_factory, bom_sample_store):
    return tiny_fit(tmp_path_factory.mktemp("bom_run"), bom_sample_store, name="bom",
                    split_day="2020-10-31T12:00", value_range=[0.0, 5.0])


def run_forecast(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        nowcast(["forecast", *map(str, args)])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_fmi_files_to_a_netcdf_that_xarray_and_pysteps_open_with_the_input_projection(tmp_path, fmi_run,
                                                                                      radar_samples, capsys):
    files = sorted((radar_samples / "radar/fmi/pgm/20160928").glob("*.pgm.gz"))[-6:]
    output = tmp_path / "fmi.nc"
    args = ["--checkpoint", fmi_run, "--source", "fmi", "--inputs", *files, "--members", 2, "--seed", 3,
            "--output", output]
    code, out, _ = run_forecast(args, capsys)
    assert code == 0 and f"forecast written to {output}\n" in out
    assert f"GIF written to {output.with_suffix('.gif')}\n" in out
    ds = xr.open_dataset(output)
    assert ds["reflectivity"].dims == ("member", "lead_time", "y", "x") and ds.sizes["member"] == 2
    assert ds["reflectivity"].attrs["units"] == "dBZ" and ds.attrs["Conventions"] == "CF-1.8"
    assert (ds["lead_time"].values / np.timedelta64(1, "m")).tolist() == [5.0, 10.0]
    last = dt.datetime.strptime(files[-1].name[:12], "%Y%m%d%H%M")
    assert ds["forecast_reference_time"].values == np.datetime64(last)
    assert ((ds["time"].values - np.datetime64(last)) / np.timedelta64(1, "m")).tolist() == [5.0, 10.0]
    np.testing.assert_allclose(ds["ensemble_mean"].values, ds["reflectivity"].values.mean(axis=0), atol=1e-5)
    probability = ds["exceedance_probability"].sel(threshold=1.0).values
    wet = (ds["reflectivity"].values >= 1.0).mean(axis=0)
    np.testing.assert_array_equal(np.isnan(probability), np.isnan(ds["ensemble_mean"].values))
    np.testing.assert_allclose(probability[~np.isnan(probability)], wet[~np.isnan(probability)])
    # The input's projection and grid, as pysteps' own importer of the raw file gives them.
    _, _, raw_meta = import_pysteps("pysteps.io").import_fmi_pgm(str(files[-1]), gzipped=True)
    grid_mapping = ds[ds["reflectivity"].attrs["grid_mapping"]]
    assert CRS.from_cf(grid_mapping.attrs) == CRS.from_proj4(raw_meta["projection"])
    _, meta = import_pysteps("pysteps.io").import_netcdf_pysteps(str(output), onerror="raise")
    assert meta["leadtimes"].tolist() == [5.0, 10.0] and meta["unit"] == "dBZ"
    for key in ("x1", "x2", "y1", "y2"):
        assert meta[key] == pytest.approx(raw_meta[key], abs=1.0)
    assert "+proj=stere" in meta["projection"] and "+lat_ts=60" in meta["projection"]
    with Image.open(output.with_suffix(".gif")) as gif:
        assert gif.n_frames == 2
    # The Python API gives the same forecast for the same seed.
    model = load_forecaster(fmi_run)
    observed = read_raw_inputs("fmi", files, {}, ModelInputs.from_hparams(model.hparams))
    api = forecast(model, observed.values, members=2, seed=3)
    np.testing.assert_array_equal(api, ds["reflectivity"].values)
    # Nothing is overwritten without --overwrite, and no partial file is left.
    before = output.read_bytes()
    code, _, err = run_forecast(args, capsys)
    assert code == 2 and err.strip().splitlines() == [f"nowcast forecast: error: {output} exists; pass --overwrite "
                                                      "to replace it, or another --output"]
    assert output.read_bytes() == before and not list(tmp_path.glob("*.partial"))


def test_bom_archive_to_zarr_with_the_input_grid_and_the_store_gives_the_same_forecast(tmp_path, bom_run,
                                                                                      bom_sample_store, radar_samples,
                                                                                      capsys):
    archive = radar_samples / "radar/bom/prcp-c10/66"
    output = tmp_path / "bom.zarr"
    code, _, _ = run_forecast(["--checkpoint", bom_run / "checkpoints/last.ckpt", "--source", "bom", "--inputs",
                               archive, "--time", "2020-10-31T06:00", "--output", output], capsys)
    assert code == 0
    ds = xr.open_zarr(output)
    assert ds["precip_accum"].attrs["units"] == "mm" and ds.sizes["member"] == 1
    assert (ds["lead_time"].values / np.timedelta64(1, "m")).tolist() == [10.0, 20.0]
    assert ds["forecast_reference_time"].values == np.datetime64("2020-10-31T06:00")
    grid_mapping = ds[ds["precip_accum"].attrs["grid_mapping"]]
    assert grid_mapping.attrs["grid_mapping_name"] == "albers_conical_equal_area"
    source = xr.open_dataset(archive / "2020/10/31/66_20201031_060000.prcp-c10.nc")
    np.testing.assert_allclose(ds["x"].values, source["x"].values * 1000.0)
    np.testing.assert_allclose(ds["y"].values, source["y"].values * 1000.0)
    for key in ("longitude_of_central_meridian", "latitude_of_projection_origin", "standard_parallel"):
        np.testing.assert_allclose(grid_mapping.attrs[key], source["proj"].attrs[key], atol=1e-3)  # pysteps rounds
    # The store converted from the same files (BoM's integer encoding kept) gives the same forecast.
    code, _, _ = run_forecast(["--checkpoint", bom_run, "--store", bom_sample_store, "--time", "2020-10-31T06:00",
                               "--output", tmp_path / "store.nc"], capsys)
    from_store = xr.open_dataset(tmp_path / "store.nc")
    assert code == 0 and from_store.attrs["input_files"].endswith("@2020-10-31T06:00:00")
    np.testing.assert_array_equal(from_store["precip_accum"].values, ds["precip_accum"].values)
    np.testing.assert_array_equal(from_store["x"].values, ds["x"].values)


def test_inputs_in_another_unit_end_with_one_line_naming_the_file_and_the_fix(tmp_path, bom_run, radar_samples,
                                                                               capsys):
    files = sorted((radar_samples / "radar/fmi/pgm/20160928").glob("*.pgm.gz"))[-8::2]  # 10 min apart, dBZ
    args = ["--checkpoint", bom_run, "--source", "fmi", "--inputs", *files, "--output", tmp_path / "x.nc"]
    code, out, err = run_forecast(args, capsys)
    assert code == 2 and not out and err.strip().splitlines() == [
        f"nowcast forecast: error: {files[0]}: holds 'dBZ', the model takes 'mm'; add --to-rain to convert "
        "reflectivity to rain with Z = a R^b (--zr-a, --zr-b)"]
    assert not (tmp_path / "x.nc").exists()
    code, _, _ = run_forecast([*args, "--to-rain", "--zr-a", "300"], capsys)
    ds = xr.open_dataset(tmp_path / "x.nc")
    assert code == 0 and ds.attrs["input_conversion"] == "converted from dBZ to mm with Z = 300 R^1.6 (R in mm/h)"
    code, _, err = run_forecast(["--checkpoint", bom_run, "--source", "fmi", "--inputs", *files[:3],
                                 "--output", tmp_path / "y.nc"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "error: missing frame 2016-09-28 17:15 UTC: the model needs 4 consecutive frames 10 min apart" in err
