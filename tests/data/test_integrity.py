"""Damaged stores: reading names the store, array and event in one line; ``nowcast-prep validate`` finds them all."""

import shutil

import numpy as np
import pytest

from data_prep.cli import main
from nowcast_pl.cli import main as cli_main
from nowcast_pl.data import RadarDataModule, RadarStore, RadarStoreWriter, Split
from nowcast_pl.data.georef import model_grid
from nowcast_pl.data.integrity import DamagedStoreError
from tests.helpers.cli import write_config
from tests.helpers.stores import ENCODING, METADATA, event_times, write_moving_store

# 6 events of 12 frames = 72 frames in two shards of 64 frames: frames/c/1/0/0 holds frames 64-71, the last
# 8 frames (4-11) of event ev005.
LAST_SHARD = "frames/c/1/0/0"


@pytest.fixture(scope="module")
def sound(tmp_path_factory):
    return write_moving_store(tmp_path_factory.mktemp("damage") / "sound.zarr", n_events=6, frames=12)


@pytest.fixture
def store(sound, tmp_path):
    return shutil.copytree(sound, tmp_path / "s.zarr")


def _overwrite(path, seed=0):
    path.write_bytes(np.random.default_rng(seed).bytes(path.stat().st_size))


def _one_line(message: str) -> str:
    assert len(message.strip().splitlines()) == 1 and "Traceback" not in message, message
    return message


def test_an_overwritten_shard_names_store_array_frames_and_event_when_read(store):
    _overwrite(store / LAST_SHARD)
    opened = RadarStore(store)
    assert opened.read_raw(0, 60).shape == (60, 16, 16)
    with pytest.raises(DamagedStoreError) as caught:
        opened.read_raw(58, 66)
    message = _one_line(str(caught.value))
    assert message.startswith(f"{store}: array 'frames' frames 58-65 (event 'ev004', 'ev005') cannot be read")
    assert "checksum" in message and f"nowcast-prep validate {store}" in message


def test_the_data_module_reports_a_damaged_window_in_one_line(store):
    _overwrite(store / LAST_SHARD)
    dm = RadarDataModule(str(store), in_frames=3, out_frames=2, value_range=(-10.0, 60.0),
                         splits={"test": Split(events=["ev005"])}, batch_size=2)
    with pytest.raises(DamagedStoreError, match=f"^{store}: array 'frames' frames 6[0-9]-71 \\(event 'ev005'\\)"):
        dm.setup("test")  # the count of windows without a valid pixel reads the split's target frames


@pytest.mark.parametrize("damaged, named", [("zarr.json", "zarr.json"), ("frames/zarr.json", "frames/zarr.json"),
                                            ("time/c/0", "array 'time'"), ("event_name/c/0", "array 'event_name'")])
def test_damaged_metadata_or_index_names_the_file_or_array_when_opened(store, damaged, named):
    _overwrite(store / damaged, seed=1)
    with pytest.raises(DamagedStoreError) as caught:
        RadarStore(store)
    message = _one_line(str(caught.value))
    assert message.startswith(f"{store}: ") and named in message, message


def test_validate_lists_each_damaged_event_and_exits_1(store, capsys):
    _overwrite(store / LAST_SHARD)
    (store / "frames/c/0/0/0").unlink()  # frames 0-63: every valid frame now reads as the fill value
    assert main(["validate", str(store)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 6, lines
    for k in range(5):
        assert lines[k].startswith(f"{store}: event 'ev00{k}' (#{k}): array 'frames' frames {12 * k}-{12 * k + 11} "
                                   "(frames 0-11 of the event) cannot be read (a valid frame reads as entirely")
    assert lines[5].startswith(f"{store}: event 'ev005' (#5): array 'frames' frames 60-71 (frames 0-11 of the event)")
    assert "is damaged (6 problem(s) above)" in _one_line(captured.err)


def test_validate_names_a_damaged_zarr_json(store, capsys):
    _overwrite(store / "zarr.json")
    assert main(["validate", str(store)]) == 1
    assert capsys.readouterr().out.startswith(f"{store}: damaged metadata file {store / 'zarr.json'} "
                                              "(UnicodeDecodeError")


def test_validate_says_ok_in_one_line_for_a_sound_store(sound, capsys):
    assert main(["validate", str(sound)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _one_line(captured.err).strip() == (f"nowcast-prep: {sound}: OK, every chunk of its 6 events (72 frames) "
                                               "read")


def test_validate_locates_an_overwritten_shard_to_its_frames(store, capsys):
    _overwrite(store / LAST_SHARD)
    assert main(["validate", str(store)]) == 1
    line = _one_line(capsys.readouterr().out)
    assert line.startswith(f"{store}: event 'ev005' (#5): array 'frames' frames 64-71 (frames 4-11 of the event) "
                           "cannot be read (ValueError: Stored and computed checksum do not match")


def test_a_few_changed_bytes_inside_a_chunk_are_detected(store, capsys):
    shard = store / LAST_SHARD
    data = bytearray(shard.read_bytes())
    data[100:104] = bytes(255 - b for b in data[100:104])  # inside the first chunk's compressed bytes
    shard.write_bytes(bytes(data))
    assert main(["validate", str(store)]) == 1
    assert "Restored data doesn't match checksum" in _one_line(capsys.readouterr().out)


def test_damaged_coordinates_are_named_when_the_model_grid_is_read(tmp_path):
    path = tmp_path / "georef.zarr"
    coords = {"y": 1000.0 * np.arange(8), "x": 1000.0 * np.arange(8)}
    with RadarStoreWriter(path, frame_shape=(8, 8), encoding=ENCODING, metadata=METADATA, coords=coords) as writer:
        writer.append_event("a", event_times(0, 2), np.zeros((2, 8, 8), np.uint8))
    _overwrite(path / "x" / "c" / "0")
    with pytest.raises(DamagedStoreError, match=f"^{path}: array 'y' or 'x' cannot be read"):
        model_grid(RadarStore(path), None, "bilinear")


def test_a_damaged_window_read_by_a_dataloader_worker_is_one_line_from_the_cli(store, tmp_path, capsys):
    # The first shard holds frames 0-63: the inputs (frames 0-3), not the targets, of ev005's windows, so the
    # split is set up and the damage is met by the DataLoader worker.
    _overwrite(store / "frames/c/0/0/0")
    config = write_config(tmp_path / "c.yaml", store)
    with pytest.raises(SystemExit) as stopped:
        cli_main(["test", "--config", str(config), "--runs_root", str(tmp_path / "runs"),
                  "--data.init_args.num_workers", "1", "--data.init_args.splits.test",
                  "{events: [ev005]}"])
    assert stopped.value.code == 2
    error = _one_line(capsys.readouterr().err.strip().splitlines()[-1])
    assert error.startswith(f"nowcast: error: DamagedStoreError: {store}: array 'frames' frames ")
    assert "DataLoader worker" not in error, error
    assert "'ev005')" in error, error
