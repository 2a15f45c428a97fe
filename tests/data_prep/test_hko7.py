"""HKO-7 converter: PNG values, 6-minute axis with missing frames, masks, index pickles, broken files."""

import numpy as np
import pytest

from data_prep.base import ConversionReport
from data_prep.cli import main
from data_prep.errors import UsageError
from data_prep.hko7 import Hko7Converter
from nowcast_pl.data import RadarStore
from tests.helpers.archives import assert_store_matches, convert, problems
from tests.helpers.archives.hko7 import (
    BAD_MASK,
    DAY1,
    DAY2,
    GRID,
    SATURATED,
    STEP,
    expected_frame,
    write_hko7,
    write_index,
)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("hko7")
    expected = write_hko7(root)
    return root, expected, write_index(root)


@pytest.fixture(scope="module")
def converted(archive, tmp_path_factory):
    root, _, _ = archive
    return convert(Hko7Converter(root), tmp_path_factory.mktemp("out") / "hko7.zarr", workers=2)


def test_every_png_day_is_one_event_with_exact_values_and_masks(archive, converted):
    _, expected, _ = archive
    store, _ = converted
    assert_store_matches(store, expected)


def test_every_problem_is_reported_and_nothing_else(archive, converted):
    _, expected, _ = archive
    _, report = converted
    assert problems(report) == expected.problems
    notes = [e.reason for e in report.entries if e.file.endswith("radarPNG") and e.action == "note"]
    assert notes == ["100 pixel(s) of grey level 255 stored as 254 (255 is the store's fill value)"]


def test_encoding_and_static_mask(converted):
    store, _ = converted
    np.testing.assert_allclose(
        store.encoding.decode(np.array([0, 254, 255], np.uint8)), [-10.0, 70 * 254 / 255 - 10, np.nan], rtol=1e-6
    )
    assert store.encoding.units == "dBZ" and store.attrs["time_step_seconds"] == 360
    assert store.static_mask.shape == GRID
    assert not store.static_mask[:20].any() and store.static_mask[20:].all()


def test_index_pickles_define_frames_and_prefix_event_names(archive, tmp_path):
    root, _, listed = archive
    index = ["pd/hko7_rainy_test.pkl", "pd/hko7_rainy_train.pkl"]
    store, report = convert(Hko7Converter(root, index=index), tmp_path / "idx.zarr")
    assert list(store.event_names) == ["hko7_rainy_test/20150110", "hko7_rainy_train/20150111"]
    rows = np.flatnonzero(store.event == 0)
    axis = DAY1[0] + np.arange(12) * STEP  # 00:00 … 01:06, the last listed time has no PNG
    np.testing.assert_array_equal(store.times[rows], axis)
    readable = [0, SATURATED, BAD_MASK, 4]
    np.testing.assert_array_equal(np.flatnonzero(store.frame_valid[rows]), readable)
    for k in readable:
        image, valid = expected_frame(DAY1[k], k)
        np.testing.assert_array_equal(store.read_raw(rows[k], rows[k] + 1)[0], image)
        np.testing.assert_array_equal(store.read_pixel_valid(rows[k], rows[k] + 1)[0], valid)
    assert {
        ("hko7_rainy_test.pkl", "hko7_rainy_test/20150110", "dropped_duplicate"),
        ("hko7_rainy_test.pkl", "hko7_rainy_test/20150110", "filled_missing"),
        ("RAD150110010600.png", "hko7_rainy_test/20150110", "filled_missing"),
    } <= problems(report)
    assert len(listed["hko7_rainy_train"]) == np.sum(store.event == 1)


def test_max_gap_cuts_days_into_runs(archive, tmp_path):
    root, _, _ = archive
    store, _ = convert(Hko7Converter(root, max_gap=0), tmp_path / "runs.zarr")
    assert list(store.event_names) == ["20150110-0000", "20150110-0036", "20150111-1200"]
    assert np.bincount(store.event).tolist() == [5, 5, DAY2.size]


def test_bad_inputs_raise_with_the_file_name(archive, tmp_path):
    root, _, _ = archive
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match="bad.pkl"):
        Hko7Converter(root, index=[str(tmp_path / "bad.pkl")]).list_events(ConversionReport())
    with pytest.raises(FileNotFoundError, match="mask-dat"):
        Hko7Converter(root, mask_dat="nope.npz")
    with pytest.raises(FileNotFoundError, match="no RAD"):
        Hko7Converter(tmp_path).list_events(ConversionReport())


def test_command_line(archive, tmp_path):
    root, _, _ = archive
    args = ["hko7", "--src", str(root), "--dst", str(tmp_path / "h.zarr"), "--index", "pd/hko7_rainy_test.pkl",
            "--index", "pd/hko7_rainy_train.pkl", "--max-gap", "20", "--no-progress"]
    assert main(args) == 0
    names = RadarStore(tmp_path / "h.zarr").event_names.tolist()
    assert names == ["hko7_rainy_test/20150110-0000", "hko7_rainy_train/20150111-1200"]
