"""SEVIR converter on a small full-size archive: values, times, masks, duplicates and broken files."""

import numpy as np
import pytest

from data_prep.cli import main
from data_prep.errors import UsageError
from data_prep.sevir import SevirConverter
from nowcast_pl.data import RadarStore
from tests.helpers.archives import assert_store_matches, convert, problems
from tests.helpers.archives.sevir import VIL_OFFSETS, vil_event, write_sevir


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("sevir")
    return root, write_sevir(root)


@pytest.fixture(scope="module")
def converted(archive, tmp_path_factory):
    root, _ = archive
    return convert(SevirConverter(root), tmp_path_factory.mktemp("out") / "sevir.zarr")


def test_events_times_values_and_masks_are_exact(archive, converted):
    _, expected = archive
    store, _ = converted
    assert_store_matches(store, expected)


def test_every_problem_is_reported_and_nothing_else(archive, converted):
    _, expected = archive
    _, report = converted
    assert problems(report) == expected.problems


def test_encoding_and_pct_missing_attribute(converted):
    store, _ = converted
    assert store.encoding.dtype == "uint8" and store.encoding.fill_value == 255
    assert store.encoding.quantity == "vil" and store.encoding.units == "1"
    assert store.attrs["time_step_seconds"] == 300
    assert store.attrs["pct_missing"] == {"R19031012000001": 2.04}
    assert store.attrs["duplicate_ids"] == "drop"
    assert store.attrs["projection"].startswith("+proj=laea")


def test_missing_pixels_stay_fill_value_and_decode_to_nan(converted):
    store, _ = converted
    start = int(np.flatnonzero(store.event == 1)[0])
    frame = store.read_raw(start + 5, start + 6)[0]
    assert (frame[150:160, 150:160] == 255).all()
    assert np.isnan(store.encoding.decode(frame)[150:160, 150:160]).all()


def test_duplicates_first_keeps_the_first_catalogue_row(archive, tmp_path):
    root, _ = archive
    store, report = convert(SevirConverter(root, duplicates="first"), tmp_path / "first.zarr")
    index = list(store.event_names).index("S800002")
    rows = np.flatnonzero(store.event == index)
    np.testing.assert_array_equal(store.read_raw(rows[0], rows[-1] + 1), np.moveaxis(vil_event(3), -1, 0))
    first = np.datetime64("2018-11-02T10:00:00") + VIL_OFFSETS[0] * np.timedelta64(60, "s")
    assert store.times[rows[0]] == first
    assert ("CATALOG.csv", "S800002", "dropped_duplicate") in problems(report)


def test_bad_options_and_catalogue_errors_name_the_fix(archive, tmp_path):
    root, _ = archive
    with pytest.raises(UsageError, match="duplicates='last'"):
        SevirConverter(root, duplicates="last")
    with pytest.raises(FileNotFoundError, match="--catalog"):
        SevirConverter(root, catalog="nope.csv").spec()
    (tmp_path / "CATALOG.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="lacks columns"):
        SevirConverter(tmp_path).spec()


def test_command_line(archive, tmp_path):
    root, _ = archive
    args = ["sevir", "--src", str(root), "--dst", str(tmp_path / "s.zarr"), "--duplicates", "first", "--no-progress"]
    assert main(args) == 0
    assert "S800002" in RadarStore(tmp_path / "s.zarr").event_names
