import json

import numpy as np
import pytest
import xarray as xr
import zarr

from nowcast_pl.data import FrameEncoding, RadarStore, RadarStoreWriter, StoreValidationError
from nowcast_pl.data.schema import validate_group
from tests.helpers.stores import ENCODING, METADATA, event_times, write_moving_store


def _writer(path, **kwargs):
    return RadarStoreWriter(path, frame_shape=(8, 8), encoding=ENCODING, metadata=METADATA, **kwargs)


def test_round_trip_is_exact_raw_and_through_xarray(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 7, 8, 8)).astype(np.uint8)
    with _writer(tmp_path / "s.zarr") as writer:
        for e in range(2):
            writer.append_event(f"e{e}", event_times(e, 7), frames[e])
    store = RadarStore(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.read_raw(0, 14), frames.reshape(14, 8, 8))
    np.testing.assert_array_equal(store.times, np.concatenate([event_times(0, 7), event_times(1, 7)]))
    assert store.event_names.tolist() == ["e0", "e1"]
    ds = xr.open_zarr(tmp_path / "s.zarr", consolidated=False)
    expected = frames.reshape(14, 8, 8) * (70 / 255) - 10.0
    decoded = ds["frames"].values
    np.testing.assert_array_equal(np.isnan(decoded), frames.reshape(14, 8, 8) == 255)
    np.testing.assert_allclose(decoded[~np.isnan(decoded)], expected[frames.reshape(14, 8, 8) != 255], atol=1e-5)
    assert ds["frames"].attrs["units"] == "dBZ"
    assert ds["time"].values[1] - ds["time"].values[0] == np.timedelta64(5, "m")


def test_missing_frames_are_recorded_and_filled(tmp_path):
    with _writer(tmp_path / "s.zarr") as writer:
        valid = np.array([True, False, True])
        writer.append_event("e", event_times(0, 3), np.full((3, 8, 8), 7, np.uint8), frame_valid=valid)
    store = RadarStore(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.frame_valid, [True, False, True])
    assert (store.read_raw(1, 2) == ENCODING.fill_value).all()
    assert (store.read_raw(0, 1) == 7).all()


def test_encode_decode_round_trip_and_overflow_error():
    enc = FrameEncoding(dtype="int16", units="mm", quantity="rain_accumulation", long_name="r", fill_value=-1,
                        scale_factor=0.05)
    values = np.array([0.0, 0.05, 12.35, np.nan])
    np.testing.assert_allclose(enc.decode(enc.encode(values)), values.astype(np.float32), rtol=1e-6)
    with pytest.raises(ValueError, match="do not fit int16"):
        enc.encode(np.array([1e6]))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: g.attrs.update({"schema": "other"}), "attribute 'schema'"),
        (lambda g: g.attrs.__delitem__("licence"), "group attribute 'licence' is missing"),
        (lambda g: g.attrs.update({"time_step_seconds": "5min"}), "attribute 'time_step_seconds' must be"),
        (lambda g: g.attrs.update({"complete": False}), "incomplete"),
        (lambda g: g["frames"].attrs.__delitem__("units"), "frames attribute 'units' is missing"),
        (lambda g: g.attrs.update({"n_frames_committed": 99}), "array 'frames' has 12 frames"),
    ],
)
def test_validator_names_the_bad_field(tmp_path, mutate, message):
    path = write_moving_store(tmp_path / "s.zarr", n_events=2, frames=6, size=8)
    group = zarr.open_group(str(path), mode="r+")
    mutate(group)
    with pytest.raises(StoreValidationError, match=message) as err:
        RadarStore(path)
    assert str(path) in str(err.value)


def test_validator_rejects_events_that_are_not_contiguous(tmp_path):
    path = write_moving_store(tmp_path / "s.zarr", n_events=2, frames=4, size=8)
    group = zarr.open_group(str(path), mode="r+")
    group["event"][:] = np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=np.int32)
    with pytest.raises(StoreValidationError, match="contiguous run"):
        validate_group(group, str(path))


def test_missing_store_error_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no radar store at .*nothing.zarr"):
        RadarStore(tmp_path / "nothing.zarr")


def test_interrupted_write_never_validates_and_resumes_without_duplicates(tmp_path):
    path = tmp_path / "s.zarr"
    frames = np.arange(3 * 5 * 64).reshape(3, 5, 8, 8).astype(np.uint8)
    writer = _writer(path)
    writer.append_event("e0", event_times(0, 5), frames[0])
    writer.append_event("e1", event_times(1, 5), frames[1])
    # Simulate a kill in the middle of the next event: arrays grown and partly written, nothing committed.
    for name in ("frames", "time", "event", "frame_valid"):
        arr = writer.group[name]
        arr.resize((13, *arr.shape[1:]))
    writer.group["frames"][10:13] = 99
    with pytest.raises(StoreValidationError, match="incomplete"):
        RadarStore(path)
    resumed = _writer(path)
    assert resumed.has_event("e0") and resumed.has_event("e1") and not resumed.has_event("e2")
    with pytest.raises(ValueError, match="already in"):
        resumed.append_event("e1", event_times(1, 5), frames[1])
    resumed.append_event("e2", event_times(2, 5), frames[2])
    resumed.finalize()
    store = RadarStore(path)
    np.testing.assert_array_equal(store.read_raw(0, 15), frames.reshape(15, 8, 8))
    assert store.event_names.tolist() == ["e0", "e1", "e2"]
    with pytest.raises(FileExistsError, match="overwrite"):
        _writer(path)


def test_resume_with_other_settings_is_refused(tmp_path):
    writer = _writer(tmp_path / "s.zarr")
    writer.append_event("e0", event_times(0, 2), np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(StoreValidationError, match="other settings"):
        RadarStoreWriter(tmp_path / "s.zarr", frame_shape=(4, 4), encoding=ENCODING, metadata=METADATA)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(times=event_times(0, 3)[::-1]), "increase strictly"),
        (dict(frames=np.zeros((3, 4, 4), np.uint8)), "grid"),
        (dict(frames=np.full((3, 8, 8), 300, np.int32)), "do not fit uint8"),
        (dict(frames=np.zeros((3, 8, 8), np.float32)), "raw integers"),
    ],
)
def test_append_rejects_bad_events(tmp_path, kwargs, message):
    args = dict(times=event_times(0, 3), frames=np.zeros((3, 8, 8), np.uint8)) | kwargs
    with pytest.raises(ValueError, match=message):
        _writer(tmp_path / "s.zarr").append_event("e", **args)


def test_store_attributes_are_json_metadata(tmp_path):
    path = write_moving_store(tmp_path / "s.zarr", n_events=1, frames=3, size=8)
    attrs = json.loads((path / "zarr.json").read_text())["attributes"]
    assert attrs["time_step_seconds"] == 300 and attrs["pixel_size_m"] == 1000.0
    assert attrs["complete"] is True and attrs["licence"] == "CC0-1.0"


def test_a_store_that_fails_the_checks_is_never_marked_complete(tmp_path):
    path = tmp_path / "s.zarr"
    writer = _writer(path)
    writer.append_event("e0", event_times(0, 4), np.zeros((4, 8, 8), np.uint8))
    writer.group["time"][2] = writer.group["time"][1]  # damaged between the append and the finalisation
    with pytest.raises(StoreValidationError, match="'time' must increase strictly"):
        writer.finalize()
    assert not zarr.open_group(str(path), mode="r").attrs["complete"]


def test_an_event_commits_in_one_write_so_a_kill_never_splits_the_counts(tmp_path, monkeypatch):
    path = tmp_path / "s.zarr"
    writer = _writer(path)
    writer.append_event("e0", event_times(0, 4), np.zeros((4, 8, 8), np.uint8))
    original, root_writes = zarr.storage.LocalStore.set, []

    async def dies_on_the_second_root_write(self, key, value):
        if key == "zarr.json":
            root_writes.append(key)
            if len(root_writes) == 2:
                raise OSError("killed")
        return await original(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", dies_on_the_second_root_write)
    with pytest.raises(OSError, match="killed"):
        writer.append_event("e1", event_times(1, 4), np.ones((4, 8, 8), np.uint8))
        writer.append_event("e2", event_times(2, 4), np.ones((4, 8, 8), np.uint8))  # its commit is cut
    monkeypatch.undo()
    attrs = zarr.open_group(str(path), mode="r", use_consolidated=False).attrs
    assert (attrs["n_frames_committed"], attrs["n_events_committed"]) == (8, 2)
