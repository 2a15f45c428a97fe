"""MeteoNet converter: rebuilt 5-minute axis, missing frames, duplicates, zones, nested archives, bad files."""

import numpy as np
import pytest

from data_prep.base import ConversionReport
from data_prep.cli import main
from data_prep.errors import UsageError
from data_prep.meteonet import MeteoNetConverter
from nowcast_pl.data import RadarStore
from tests.helpers.archives import assert_store_matches, convert, problems
from tests.helpers.archives.meteonet import expected_se, write_meteonet


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("meteonet")
    return root, write_meteonet(root)


@pytest.fixture(scope="module")
def converted(archive, tmp_path_factory):
    root, _ = archive
    out = tmp_path_factory.mktemp("out")
    return convert(MeteoNetConverter(root, extract_to=str(out / "extracted")), out / "meteonet.zarr", workers=2)


def test_days_are_events_on_the_rebuilt_axis_with_exact_values(archive, converted):
    _, expected = archive
    store, _ = converted
    assert_store_matches(store, expected)


def test_every_problem_is_reported_and_nothing_else(archive, converted):
    _, expected = archive
    _, report = converted
    assert problems(report) == expected.problems


def test_encoding_and_grid_attributes(converted):
    store, _ = converted
    assert store.encoding.dtype == "uint8" and store.encoding.units == "dBZ"
    assert store.encoding.scale_factor == 1.0 and store.encoding.fill_value == 255
    assert store.frame_shape == (565, 784) and store.attrs["zone"] == "NW"
    np.testing.assert_allclose(store.attrs["lat_first_last_row"], [51.891, 46.251])
    assert np.isnan(store.encoding.decode(store.read_raw(0, 1))[0, 0, :12]).all()


def test_nested_archives_need_extract_to(archive, tmp_path):
    root, _ = archive
    store, report = convert(MeteoNetConverter(root), tmp_path / "loose.zarr")
    assert list(store.event_names) == ["20160830", "20160831"]
    assert ("NW_reflectivity_old_product_2016.tar.gz", "", "skipped") in problems(report)


def test_extraction_is_resumable(archive, tmp_path):
    root, _ = archive
    converter = MeteoNetConverter(root, extract_to=str(tmp_path / "x"))
    converter.list_events(report=ConversionReport())
    extracted = tmp_path / "x" / "reflectivity_old_NW_2016_09.1.npz"
    stamp = extracted.stat().st_mtime_ns
    assert len(converter.list_events(report=ConversionReport())) == 3
    assert extracted.stat().st_mtime_ns == stamp


def test_se_zone(archive, tmp_path):
    root, _ = archive
    store, _ = convert(MeteoNetConverter(root, zone="SE"), tmp_path / "se.zarr")
    assert store.frame_shape == (515, 784) and list(store.event_names) == ["20160830"]
    want = expected_se()
    np.testing.assert_array_equal(store.read_raw(0, len(store)), want.frames)
    np.testing.assert_array_equal(store.times, want.times)


def test_bad_zone_and_empty_source(tmp_path):
    with pytest.raises(UsageError, match="zone='XX'"):
        MeteoNetConverter(tmp_path, zone="XX")
    with pytest.raises(FileNotFoundError, match="reflectivity_old_NW"):
        MeteoNetConverter(tmp_path).list_events(ConversionReport())


def test_command_line(archive, tmp_path):
    root, _ = archive
    args = ["meteonet", "--src", str(root), "--dst", str(tmp_path / "m.zarr"), "--zone", "NW", "--extract-to",
            str(tmp_path / "x"), "--no-progress"]
    assert main(args) == 0
    assert RadarStore(tmp_path / "m.zarr").event_names.tolist() == ["20160830", "20160831", "20160901"]
