"""Forecast files of ``nowcast predict``: the CF Zarr store, pysteps NetCDF, georeferencing on the model grid."""

import datetime as dt
import warnings

import numpy as np
import pytest
import xarray as xr
import yaml

from nowcast_pl.cli import build_cli
from nowcast_pl.data import RadarStoreWriter, StoreMetadata
from tests.helpers.cli import write_config
from tests.helpers.stores import ENCODING, event_times, moving_frames

LCC = ("+proj=lcc +lat_1=49.83 +lat_2=51.17 +lat_0=50.797815 +lon_0=4.359215 +x_0=649328 +y_0=665262 "
       "+ellps=GRS80 +units=m")
T0 = dt.datetime(2021, 7, 4, 16, 50)
X0, Y0 = 200_000.0, 800_000.0  # centre of the first pixel (m); 1 km pixels, y decreasing (row 0 = north)


@pytest.fixture(scope="module")
def georeferenced_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("geo") / "geo.zarr"
    metadata = StoreMetadata(title="geo test store", source="tests", licence="CC0-1.0", citation="none",
                             time_step_seconds=300, pixel_size_m=1000.0, projection=LCC,
                             extra={"institution": "Test Institute"})
    coords = {"y": Y0 - 1000.0 * np.arange(16), "x": X0 + 1000.0 * np.arange(16)}
    rng = np.random.default_rng(0)
    with RadarStoreWriter(path, frame_shape=(16, 16), encoding=ENCODING, metadata=metadata, coords=coords) as w:
        for e in range(6):
            w.append_event(f"ev{e}", event_times(e, 12), moving_frames(rng, 12, 16))
    return path


def test_stores_open_with_xarray_without_any_warning(georeferenced_store):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(georeferenced_store)
    assert ds["frames"].attrs["units"] == "dBZ" and ds.sizes["time"] == 72


def test_predict_writes_a_cf_store_and_pysteps_netcdf_on_the_model_grid(tmp_path, georeferenced_store):
    cfg = write_config(tmp_path / "c.yaml", georeferenced_store, model="nowcast_pl.models.baselines.PersistenceTask")
    config = yaml.safe_load(cfg.read_text())
    config["data"]["init_args"] |= {"frame_size": 8, "resize_method": "area"}
    config["trainer"]["callbacks"] = [{"class_path": "nowcast_pl.callbacks.ForecastWriter",
                                       "init_args": {"netcdf": True}}]
    cfg.write_text(yaml.safe_dump(config))
    cli = build_cli(["predict", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--run_name", "p"])
    assert cli.trainer.predict_loop.predictions == []  # streamed to disk, not kept in memory
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(tmp_path / "runs/p/forecast.zarr")
    forecast = ds["forecast"]
    assert forecast.dims == ("init_time", "member", "lead_time", "y", "x") and forecast.attrs["units"] == "dBZ"
    np.testing.assert_allclose(ds["x"].values, X0 + 500.0 + 2000.0 * np.arange(8))  # 2 km pixels, same extent
    np.testing.assert_allclose(ds["y"].values, Y0 - 500.0 - 2000.0 * np.arange(8))
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate" and ds["x"].attrs["units"] == "m"
    assert forecast.attrs["grid_mapping"] == "crs"
    assert ds["crs"].attrs["grid_mapping_name"] == "lambert_conformal_conic"
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["institution"] == "Test Institute"
    assert ds["lead_time"].values.tolist() == [5, 10, 15, 20] and ds["lead_time"].attrs["units"] == "minutes"
    # Persistence: every lead equals the last observed frame, in dBZ on the 8 x 8 grid.
    datamodule = cli.datamodule
    first = datamodule.datasets["predict"][0]
    last_input = datamodule.to_physical(first["inputs"][-1, 0].numpy())
    for lead in range(4):
        np.testing.assert_allclose(forecast.values[0, 0, lead], last_input, atol=1e-4)
    assert ds["init_time"].values[0] == np.datetime64(int(first["init_time"]), "s")
    files = sorted((tmp_path / "runs/p/forecast_netcdf").glob("*.nc"))
    assert len(files) == ds.sizes["init_time"]
    nc = xr.open_dataset(files[0])
    name = next(v for v in nc.data_vars if nc[v].dims == ("time", "y", "x"))
    np.testing.assert_allclose(nc[name].values, forecast.values[0, 0], atol=1e-3)
    np.testing.assert_allclose(nc["x"].values, ds["x"].values)
    np.testing.assert_allclose(nc["y"].values, ds["y"].values)
