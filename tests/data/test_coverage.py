"""Windows without any valid pixel are counted at set-up, and a training batch of them is an error, not a 0 loss."""

import logging
import math

import numpy as np
import pytest

from nowcast_pl.cli import build_cli, main
from nowcast_pl.data import RadarDataModule, RadarStoreWriter, Split
from tests.helpers.cli import write_config
from tests.helpers.stores import ENCODING, METADATA, event_times, moving_frames, write_moving_store

ALL_FRAMES = list(range(12))


def _setup(store, splits):
    dm = RadarDataModule(str(store), in_frames=4, out_frames=4, value_range=(-10.0, 60.0), splits=splits)
    dm.setup("fit")
    return dm


def test_windows_whose_targets_are_all_nan_are_counted_per_split(tmp_path, caplog):
    # 3 events of 12 frames: 5 windows of 4 + 4 frames each. Event 1's frames 6..11 hold only the fill value,
    # so its windows starting at frames 2, 3 and 4 (targets 6..9, 7..10, 8..11) have no valid target pixel.
    store = write_moving_store(tmp_path / "s.zarr", n_events=3, frames=12, no_data={1: [6, 7, 8, 9, 10, 11]})
    with caplog.at_level(logging.WARNING, logger="nowcast_pl.data.datamodule"):
        dm = _setup(store, {"train": Split(), "val": Split(events=["ev002"])})
    assert dm.windows_without_valid_pixel == {"train": 3, "val": 0}
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "train: 3 of 15 windows have no valid pixel in their 4 target frames"]


def test_an_all_nan_store_is_reported_at_setup(tmp_path, caplog):
    store = write_moving_store(tmp_path / "s.zarr", n_events=3, frames=12, no_data={e: ALL_FRAMES for e in range(3)})
    with caplog.at_level(logging.WARNING, logger="nowcast_pl.data.datamodule"):
        _setup(store, {"train": Split()})
    message = caplog.records[0].getMessage()
    assert message.startswith("train: 15 of 15 windows have no valid pixel in their 4 target frames (missing or "
                              f"all-NaN frames of {store})")


def test_fitting_on_an_all_nan_store_is_an_error_naming_the_batch(tmp_path, capsys):
    store = write_moving_store(tmp_path / "s.zarr", no_data={e: ALL_FRAMES for e in range(6)})
    cfg = write_config(tmp_path / "c.yaml", store)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--trainer.logger", "false"])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("nowcast: error:")]
    assert len(errors) == 1
    assert errors[0].startswith("nowcast: error: ValueError: the training batch of global step 0 (windows [")
    assert "has no valid target pixel, so its loss would be 0" in errors[0]


@pytest.mark.parametrize("mask", ["static_mask", "pixel_valid"])
def test_masked_out_pixels_count_as_missing(tmp_path, mask):
    # One 12-frame event whose frames hold data, but the masks exclude every pixel of frames 4..11 (pixel_valid)
    # or of the whole grid (static_mask): 5 windows, targets 4..7 .. 8..11.
    frames = moving_frames(np.random.default_rng(0), 12, 16)
    pixel_valid = np.ones((12, 16, 16), dtype=bool)
    pixel_valid[4:] = False
    kwargs = {"static_mask": np.zeros((16, 16), dtype=bool)} if mask == "static_mask" else {"pixel_masks": True}
    with RadarStoreWriter(tmp_path / "s.zarr", frame_shape=(16, 16), encoding=ENCODING, metadata=METADATA,
                          **kwargs) as writer:
        writer.append_event("ev000", event_times(0, 12), frames,
                            pixel_valid=pixel_valid if mask == "pixel_valid" else None)
    assert _setup(tmp_path / "s.zarr", {"train": Split()}).windows_without_valid_pixel == {"train": 5}


def test_validation_windows_without_a_valid_pixel_do_not_count_as_a_zero_loss(tmp_path):
    # Event 3 holds the validation windows of write_config; all its frames are no-data.
    store = write_moving_store(tmp_path / "s.zarr", no_data={3: ALL_FRAMES})
    cfg = write_config(tmp_path / "c.yaml", store)
    cli = build_cli(["fit", "--config", str(cfg), "--runs_root", str(tmp_path / "runs"), "--trainer.logger", "false"])
    assert cli.datamodule.windows_without_valid_pixel == {"train": 0, "val": 4}
    assert math.isnan(cli.trainer.callback_metrics["val/loss"])
    assert math.isfinite(cli.trainer.callback_metrics["train/loss"])
