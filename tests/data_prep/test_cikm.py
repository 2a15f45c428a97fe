"""CIKM converter: line parsing (shrunken and full size), kept height, missing values, official splits."""

import numpy as np
import pytest

from data_prep.base import ConversionReport
from data_prep.cikm import CikmConverter, CikmLineError, parse_line
from data_prep.cli import main
from data_prep.errors import UsageError
from nowcast_pl.data import RadarStore
from tests.helpers.archives import assert_store_matches, convert, problems
from tests.helpers.archives.cikm import SMALL, line, sample, write_cikm, write_full


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("cikm")
    return root, write_cikm(root)


@pytest.fixture(scope="module")
def converted(archive, tmp_path_factory):
    root, _ = archive
    return convert(CikmConverter(root, sample_shape=SMALL), tmp_path_factory.mktemp("out") / "cikm.zarr")


def test_lines_convert_exactly_with_split_names(archive, converted):
    _, expected = archive
    store, report = converted
    assert_store_matches(store, expected)
    assert problems(report) == expected.problems
    assert store.encoding.dtype == "int16" and store.encoding.fill_value == -1
    assert store.attrs["height_index"] == 2 and store.attrs["time_step_seconds"] == 360


def test_missing_values_stay_fill_and_decode_to_nan(converted):
    store, _ = converted
    raw = store.read_raw(0, 6)
    decoded = store.encoding.decode(raw)
    assert (raw == -1).any()
    np.testing.assert_array_equal(np.isnan(decoded), raw == -1)
    np.testing.assert_allclose(decoded[raw == 255], 85.0, rtol=1e-6)


def test_other_height_index(archive, tmp_path):
    root, _ = archive
    store, _ = convert(CikmConverter(root, sample_shape=SMALL, height_index=0), tmp_path / "h0.zarr")
    np.testing.assert_array_equal(store.read_raw(0, 6), sample(0)[:, 0])


def test_one_full_size_line(tmp_path):
    values = write_full(tmp_path / "raw")
    store, report = convert(CikmConverter(tmp_path / "raw"), tmp_path / "full.zarr")
    assert list(store.event_names) == ["train/00000"] and store.frame_shape == (101, 101)
    np.testing.assert_array_equal(store.read_raw(0, 15), values[:, 2])
    assert store.attrs["height_km"] == 2.5
    assert {(e.file.split("/")[-1], e.action) for e in report.entries} == {("testA.txt", "note"),
                                                                            ("testB.txt", "note")}


def test_parse_line_reshapes_time_outer_and_rejects_bad_lines():
    values = sample(5, (3, 2, 4, 4))
    sample_id, label, parsed = parse_line(line("x_1", 1.5, values).encode(), (3, 2, 4, 4))
    assert (sample_id, label) == ("x_1", 1.5)
    np.testing.assert_array_equal(parsed, values)
    assert parse_line(line("x", 0, values).encode(), (3, 2, 4, 4))[2][2, 1, 0, 0] == 21
    for bad, message in [(b"no commas", "not '<id>"), (b"a,b,1 2", "label"),
                         (line("x", 0, values.ravel()[:-1]).encode(), "95 integers"),
                         (line("x", 0, values + 300).encode(), "outside -1..255")]:
        with pytest.raises(CikmLineError, match=message):
            parse_line(bad, (3, 2, 4, 4))


def test_bad_options_and_empty_source(tmp_path):
    with pytest.raises(UsageError, match="height_index=4"):
        CikmConverter(tmp_path, height_index=4)
    with pytest.raises(UsageError, match="train.txt"):
        CikmConverter(tmp_path).list_events(ConversionReport())


def test_command_line_on_a_full_size_line(tmp_path):
    values = write_full(tmp_path / "raw")
    args = ["cikm", "--src", str(tmp_path / "raw"), "--dst", str(tmp_path / "c.zarr"), "--height-index", "3",
            "--no-progress"]
    assert main(args) == 0
    np.testing.assert_array_equal(RadarStore(tmp_path / "c.zarr").read_raw(0, 15), values[:, 3])
