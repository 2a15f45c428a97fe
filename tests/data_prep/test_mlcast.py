"""mlcast datasets in and out: ``nowcast-prep mlcast`` (dataset → store) and ``nowcast-prep export-mlcast``
(radar store or forecast store → dataset), checked with the mlcast community's validator."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr
from pyproj import CRS

import data_prep.mlcast
from data_prep.cli import main
from nowcast_pl.data import RadarDataModule, RadarStore, RadarStoreWriter, Split, StoreMetadata, mlcast_export
from nowcast_pl.data.forecast_store import (
    create_forecast_store,
    finish_forecast_store,
    open_forecast_array,
    partial_path,
)
from nowcast_pl.data.georef import ModelGrid
from nowcast_pl.data.mlcast import MlcastAttributes, missing_times
from nowcast_pl.data.mlcast_export import export_mlcast
from tests.helpers.mlcast import (
    ATTRIBUTES,
    MISSING,
    PROJECTION,
    TIMES,
    grid,
    validator_failures,
    write_mlcast_dataset,
)
from tests.helpers.stores import ENCODING, write_moving_store

EXPORT_ARGS = ["--license", ATTRIBUTES["license"], "--created-by", ATTRIBUTES["created_by"],
               "--created-with", ATTRIBUTES["created_with"], "--identifier", "FI-TEST-dbz"]
HOUR = np.timedelta64(1, "h")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlcast") / "radar.zarr"
    return path, write_mlcast_dataset(path)


def _georeferenced_store(path, *, size=256):
    """A 256×256 reflectivity store on EPSG:3067, hourly frames in 2020 and 2023 (3 years), one frame missing."""
    y, x = grid(size)
    metadata = StoreMetadata(title="test store", source="tests", licence="CC-BY-4.0", citation="none",
                             time_step_seconds=3600, pixel_size_m=1000.0, projection=PROJECTION.to_wkt())
    rng = np.random.default_rng(1)
    with RadarStoreWriter(path, frame_shape=(size, size), encoding=ENCODING, metadata=metadata,
                          coords={"y": y, "x": x}) as writer:
        writer.append_event("a", np.datetime64("2020-01-01T00:00") + np.arange(3) * HOUR,
                            rng.integers(0, 255, (3, size, size)).astype(np.uint8))
        writer.append_event("b", np.datetime64("2023-01-02T00:00") + np.arange(4) * HOUR,
                            rng.integers(0, 255, (4, size, size)).astype(np.uint8),
                            frame_valid=np.array([True, False, True, True]))
    return path


def test_generated_dataset_passes_the_validator(dataset, monkeypatch):
    path, _ = dataset
    assert validator_failures(path, monkeypatch) == []


def test_converted_dataset_gives_windows_of_its_values_and_times(dataset, tmp_path, monkeypatch):
    path, written = dataset
    monkeypatch.setattr(data_prep.mlcast, "READ_FRAMES", 5)  # read in several batches, one across the gap
    store_path = tmp_path / "store.zarr"
    assert main(["mlcast", "--src", str(path), "--dst", str(store_path), "--no-progress"]) == 0
    store = RadarStore(store_path)
    assert store.event_names.tolist() == ["2020-01-01T00:00", "2023-01-01T00:00"]
    np.testing.assert_array_equal(store.times, TIMES.values.astype("datetime64[s]"))
    assert store.frame_valid.tolist() == [i != MISSING for i in range(len(TIMES))]
    assert store.encoding.units == "mm h-1" and store.attrs["time_step_seconds"] == 300
    assert CRS.from_wkt(store.attrs["projection"]) == PROJECTION
    decoded = store.encoding.decode(store.read_raw(0, len(store)))[store.frame_valid]
    np.testing.assert_allclose(decoded, written["rr"].values, atol=1e-4)

    module = RadarDataModule(str(store_path), in_frames=2, out_frames=2, value_range=(0.0, 10.0),
                             splits={"test": Split()})
    module.setup("test")
    windows = module.datasets["test"]
    # 12 frames of 2023 with frame 5 missing: windows start at frames 0-1 and 6-8 of that day.
    expected_starts = [1, 2, 7, 8, 9]
    np.testing.assert_array_equal(windows.starts, expected_starts)
    item = windows[0]
    np.testing.assert_array_equal(item["init_time"].item(), TIMES[2].value // 10**9)
    source = np.clip(written["rr"].values[1:3], 0.0, 10.0) / 10.0
    valid = ~np.isnan(source)
    np.testing.assert_allclose(item["inputs"][:, 0].numpy()[valid], source[valid], atol=1e-6)
    assert not item["input_mask"][:, 0].numpy()[~valid].any() and item["input_mask"][:, 0].numpy()[valid].all()


def test_exported_store_passes_the_validator_and_converts_back_exactly(tmp_path, monkeypatch, capsys):
    store_path = _georeferenced_store(tmp_path / "store.zarr")
    out = tmp_path / "export.zarr"
    assert main(["export-mlcast", str(store_path), "--dst", str(out), *EXPORT_ARGS]) == 0
    assert validator_failures(out, monkeypatch) == []
    exported = xr.open_zarr(out)
    assert exported["dbz"].attrs["standard_name"] == "equivalent_reflectivity_factor"
    assert exported.sizes["time"] == 6 and exported.sizes["missing_times"] == missing_times(
        exported["time"].values).size

    back = tmp_path / "back.zarr"
    assert main(["mlcast", "--src", str(out), "--dst", str(back), "--no-progress"]) == 0
    original, copy = RadarStore(store_path), RadarStore(back)
    np.testing.assert_array_equal(copy.times, original.times)
    np.testing.assert_array_equal(copy.frame_valid, original.frame_valid)
    valid = original.frame_valid
    np.testing.assert_array_equal(copy.read_raw(0, len(copy))[valid], original.read_raw(0, len(original))[valid])
    assert copy.encoding == original.encoding
    assert CRS.from_wkt(copy.attrs["projection"]) == PROJECTION
    for axis in ("y", "x"):
        np.testing.assert_array_equal(zarr.open_group(str(back))[axis][:], zarr.open_group(str(store_path))[axis][:])


def test_forecast_store_exports_one_lead_time_at_its_valid_times(tmp_path, monkeypatch):
    y, x = grid(256)
    init = (np.array(["2020-01-01T00:00", "2023-01-02T00:00", "2023-01-02T01:00"], dtype="datetime64[s]"))
    path = tmp_path / "forecast.zarr"
    create_forecast_store(partial_path(path), init_times=init.astype(np.int64), members=2,
                          lead_minutes=np.array([5, 10]), grid=ModelGrid(y, x, PROJECTION.to_wkt(), True),
                          shape=(256, 256), units="mm h-1", attrs={"title": "test", "quantity": "rain_rate"})
    values = np.random.default_rng(2).random((3, 2, 2, 256, 256), dtype=np.float32)
    open_forecast_array(partial_path(path))[:] = values
    finish_forecast_store(partial_path(path), path)

    out = tmp_path / "lead10.zarr"
    attributes = MlcastAttributes(**ATTRIBUTES)
    summary = export_mlcast(path, out, attributes, lead_minutes=10, member="mean")
    assert summary == {"dst": str(out), "variable": "rr", "frames": 3, "missing_times": summary["missing_times"]}
    assert validator_failures(out, monkeypatch) == []
    exported = xr.open_zarr(out)
    np.testing.assert_array_equal(exported["time"].values, (init + np.timedelta64(10, "m")).astype("datetime64[ns]"))
    np.testing.assert_allclose(exported["rr"].values, values[:, :, 1].mean(axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match=r"no lead time of 15 min; its lead times are \[5, 10\]"):
        export_mlcast(path, tmp_path / "x.zarr", attributes, lead_minutes=15)
    with pytest.raises(ValueError, match="choose the lead time to export with lead_minutes"):
        export_mlcast(path, tmp_path / "x.zarr", attributes)


def _broken(path, tmp_path, edit):
    ds = xr.open_zarr(path).load()
    edit(ds)
    for name in ds.variables:
        ds[name].encoding = {}
    bad = tmp_path / "bad.zarr"
    ds.to_zarr(bad, mode="w", zarr_format=3, consolidated=False)
    return bad


@pytest.mark.parametrize(("edit", "fragments"), [
    (lambda ds: ds["rr"].attrs.pop("grid_mapping"), ["variable 'rr' has no 'grid_mapping' attribute",
                                                     "add grid_mapping='crs'"]),
    (lambda ds: ds["rr"].attrs.update(units="K"), ["variable 'rr' has units 'K'", "fix its 'units' attribute"]),
    (lambda ds: ds["rr"].attrs.update(units="dBZ"), ["standard_name 'rainfall_flux'", "e.g. mm/h"]),
    (lambda ds: ds["x"].attrs.update(units="degrees_east"), ["coordinate 'x' has units 'degrees_east'"]),
])
def test_bad_dataset_gives_one_line_naming_the_field_and_fix(dataset, tmp_path, capsys, edit, fragments):
    bad = _broken(dataset[0], tmp_path, edit)
    assert main(["mlcast", "--src", str(bad), "--dst", str(tmp_path / "s.zarr"), "--no-progress"]) == 1
    err = _one_line_error(capsys)
    assert all(fragment in err for fragment in fragments), err


def test_time_out_of_order_names_the_times_and_the_fix(dataset, tmp_path, capsys):
    ds = xr.open_zarr(dataset[0]).load().isel(time=[0, 2, 1, 3])
    for name in ds.variables:
        ds[name].encoding = {}
    bad = tmp_path / "unsorted.zarr"
    ds.to_zarr(bad, mode="w", zarr_format=3, consolidated=False)
    assert main(["mlcast", "--src", str(bad), "--dst", str(tmp_path / "s.zarr"), "--no-progress"]) == 1
    err = _one_line_error(capsys)
    assert "'time' is not strictly increasing (2023-01-01T00:05:00 then 2023-01-01T00:00:00" in err
    assert "ds.sortby('time')" in err


def test_export_mistakes_give_one_line(tmp_path, capsys):
    plain = write_moving_store(tmp_path / "plain.zarr", n_events=1, frames=3, size=8)
    assert main(["export-mlcast", str(plain), "--dst", str(tmp_path / "o.zarr"), *EXPORT_ARGS]) == 1
    assert "has no projection and projected y/x coordinates" in _one_line_error(capsys)
    store = _georeferenced_store(tmp_path / "store.zarr", size=8)
    bad_contact = [*EXPORT_ARGS[:2], "--created-by", "nobody", *EXPORT_ARGS[4:]]
    assert main(["export-mlcast", str(store), "--dst", str(tmp_path / "o.zarr"), *bad_contact]) == 1
    assert "created_by='nobody' is not 'Name <email>'" in _one_line_error(capsys)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep")
    assert main(["export-mlcast", str(store), "--dst", str(tmp_path / "taken"), *EXPORT_ARGS, "--overwrite"]) == 1
    assert "is not an mlcast dataset, so it is not replaced" in _one_line_error(capsys)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep"


def test_export_killed_midway_leaves_the_previous_dataset(tmp_path, monkeypatch):
    store = _georeferenced_store(tmp_path / "store.zarr", size=8)
    out = tmp_path / "export.zarr"
    attributes = MlcastAttributes(**ATTRIBUTES)
    monkeypatch.setattr(mlcast_export, "BATCH_FRAMES", 2)
    export_mlcast(store, out, attributes)
    before = xr.open_zarr(out).load()
    calls = []

    def read_raw_then_die(self, start, stop):
        calls.append(start)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return original_read_raw(self, start, stop)

    original_read_raw = RadarStore.read_raw
    monkeypatch.setattr(RadarStore, "read_raw", read_raw_then_die)
    with pytest.raises(KeyboardInterrupt):
        export_mlcast(store, out, attributes, overwrite=True)
    assert (tmp_path / "export.zarr.partial").is_dir()
    xr.testing.assert_identical(xr.open_zarr(out).load(), before)
    monkeypatch.setattr(RadarStore, "read_raw", original_read_raw)
    export_mlcast(store, out, attributes, overwrite=True)
    assert not (tmp_path / "export.zarr.partial").exists()
    np.testing.assert_array_equal(xr.open_zarr(out)["dbz"].values, before["dbz"].values)
