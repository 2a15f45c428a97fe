"""The forecast file of ``nowcast forecast`` on generated grids: layout, grids without projection, atomic writes."""

import warnings

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from nowcast_pl.data.georef import ModelGrid
from nowcast_pl.forecasting.forecast_file import forecast_dataset, write_forecast
from nowcast_pl.forecasting.inputs import ModelInputs, ObservedFrames
from nowcast_pl.forecasting.quicklook import write_quicklook

MODEL = ModelInputs(in_frames=2, out_frames=3, step_seconds=600, units="mm h-1", thresholds=(0.5, 2.0),
                    value_range=(0.0, 10.0))


def observed(grid: ModelGrid) -> ObservedFrames:
    values = np.ones((2, 4, 5), np.float32)
    values[:, 0, 0] = np.nan  # outside the coverage in every frame
    values[0, 1, 1] = np.nan  # missing in one frame only
    return ObservedFrames(values=values, times=np.array(["2021-01-01T00:00", "2021-01-01T00:10"], "datetime64[s]"),
                          units="mm h-1", grid=grid, files=("a", "b"), attrs={"title": "t", "licence": "CC0"})


def test_layout_values_and_a_grid_without_projection(tmp_path):
    forecast = np.stack([np.full((3, 4, 5), v, np.float32) for v in (0.0, 1.0, 3.0, 1.0)])
    grid = ModelGrid(y=np.arange(4)[::-1] * 1000.0 + 500, x=np.arange(5) * 1000.0 + 500, projection="",
                     projected=False)
    ds = forecast_dataset(forecast, observed(grid), MODEL, attrs={"seed": 7})
    path = write_forecast(ds, tmp_path / "f.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = xr.open_zarr(path)
    rain = back["precip_intensity"]
    assert rain.dims == ("member", "lead_time", "y", "x") and "grid_mapping" not in rain.attrs
    assert np.isnan(rain.values[:, :, 0, 0]).all() and not np.isnan(rain.values[:, :, 1, 1]).any()
    np.testing.assert_allclose(back["ensemble_mean"].values[:, 2, 2], 1.25)
    np.testing.assert_allclose(back["exceedance_probability"].sel(threshold=2.0).values[:, 2, 2], 0.25)
    np.testing.assert_allclose(back["exceedance_probability"].sel(threshold=0.5).values[:, 2, 2], 0.75)
    assert (back["lead_time"].values / np.timedelta64(1, "m")).tolist() == [10.0, 20.0, 30.0]
    assert back["x"].attrs["units"] == "m" and "standard_name" not in back["x"].attrs
    assert back.attrs["seed"] == 7 and back.attrs["licence"] == "CC0" and back.attrs["input_files"] == "a\nb"


def test_existing_outputs_are_kept_unless_overwrite_and_never_another_kind(tmp_path):
    grid = ModelGrid(None, None, "", False)
    ds = forecast_dataset(np.zeros((1, 3, 4, 5), np.float32), observed(grid), MODEL, attrs={})
    path = write_forecast(ds, tmp_path / "f.nc")
    with pytest.raises(FileExistsError, match=r"f.nc exists; pass --overwrite to replace it"):
        write_forecast(ds, path)
    write_forecast(ds.assign(precip_intensity=ds["precip_intensity"] + 1), path, overwrite=True)
    assert float(xr.open_dataset(path)["precip_intensity"].max()) == 1.0
    (tmp_path / "notes.zarr").mkdir()
    (tmp_path / "notes.zarr" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is not a file of the kind written there"):
        write_forecast(ds, tmp_path / "notes.zarr", overwrite=True)
    with pytest.raises(ValueError, match=r"--output f.grib: give a .nc \(NetCDF\) or .zarr \(Zarr\) path"):
        write_forecast(ds, "f.grib")
    assert (tmp_path / "notes.zarr" / "mine.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "f.nc", "notes.zarr"]


def test_quicklook_has_one_frame_per_lead_and_no_threshold_panel_without_thresholds(tmp_path):
    model = ModelInputs(**{**MODEL.__dict__, "thresholds": ()})
    ds = forecast_dataset(np.ones((2, 3, 4, 5), np.float32), observed(ModelGrid(None, None, "", False)), model,
                          attrs={})
    assert "exceedance_probability" not in ds and "threshold" not in ds.coords
    path = write_quicklook(tmp_path / "q.gif", ds, np.ones((4, 5)), value_range=model.value_range)
    with Image.open(path) as gif:
        assert gif.n_frames == 3
    assert [p.name for p in tmp_path.iterdir()] == ["q.gif"]
