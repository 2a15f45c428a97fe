"""Shanghai converter: PNG folders and DiffCast HDF5, raw grey levels, synthetic times, split prefixes."""

import numpy as np
import pytest

from data_prep.cli import main
from data_prep.errors import UsageError
from data_prep.shanghai import ShanghaiConverter
from nowcast_pl.data import RadarStore
from tests.helpers.archives import assert_store_matches, convert, problems
from tests.helpers.archives.shanghai import write_h5, write_pngs


@pytest.fixture(scope="module")
def png_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("nh_radar_comp_echo")
    return root, write_pngs(root)


@pytest.fixture(scope="module")
def h5_archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("shanghai_h5") / "shanghai.h5"
    return path, write_h5(path)


def test_png_folders_convert_exactly_with_split_prefixes(png_archive, tmp_path):
    root, expected = png_archive
    store, report = convert(ShanghaiConverter(root), tmp_path / "png.zarr")
    assert_store_matches(store, expected)
    assert problems(report) == expected.problems
    assert [e.reason.split(" pixel")[0] for e in report.entries if e.action == "note"] == ["16"]
    assert store.frame_shape == (64, 64)
    assert store.encoding.quantity == "grey_level" and store.encoding.units == "1"
    assert store.encoding.scale_factor == 1.0 and store.encoding.fill_value == 255


@pytest.mark.parametrize("src", ["file", "folder"])
def test_h5_windows_convert_exactly(h5_archive, tmp_path, src):
    path, expected = h5_archive
    store, report = convert(ShanghaiConverter(path if src == "file" else path.parent), tmp_path / "h5.zarr")
    assert_store_matches(store, expected)
    assert problems(report) == expected.problems
    assert "all_len = 3" in " ".join(e.reason for e in report.entries)


def test_train_fraction_and_explicit_grid(png_archive, tmp_path):
    root, _ = png_archive
    store, _ = convert(ShanghaiConverter(root, train_fraction=1.0, grid=(64, 64)), tmp_path / "all.zarr")
    assert [n.split("/")[0] for n in store.event_names] == ["train"] * 3
    store, report = convert(ShanghaiConverter(root, grid=(32, 32)), tmp_path / "small.zarr")
    assert list(store.event_names) == ["train/seq_0002"]
    assert store.frame_valid.tolist() == [False] * 6 + [True] + [False] * 3


def test_synthetic_times_are_6_minutes_and_events_never_overlap(h5_archive, tmp_path):
    path, _ = h5_archive
    store, _ = convert(ShanghaiConverter(path), tmp_path / "t.zarr")
    assert (np.diff(store.times)[np.diff(store.event) == 0] == np.timedelta64(360, "s")).all()
    assert (np.diff(store.times) > np.timedelta64(0, "s")).all()


def test_bad_options_name_the_fix(png_archive, tmp_path):
    root, _ = png_archive
    with pytest.raises(UsageError, match="layout='zip'"):
        ShanghaiConverter(root, layout="zip")
    with pytest.raises(UsageError, match="train_fraction"):
        ShanghaiConverter(root, train_fraction=1.5)
    with pytest.raises(FileNotFoundError, match="shanghai.h5"):
        ShanghaiConverter(root, layout="h5")
    with pytest.raises(UsageError, match="no <sequence>"):
        ShanghaiConverter(tmp_path).spec()


def test_command_line(png_archive, tmp_path):
    root, _ = png_archive
    args = ["shanghai", "--src", str(root), "--dst", str(tmp_path / "s.zarr"), "--layout", "png",
            "--train-fraction", "0.4", "--grid", "64", "64", "--no-progress"]
    assert main(args) == 0
    names = RadarStore(tmp_path / "s.zarr").event_names.tolist()
    assert names == ["train/seq_0001", "test/seq_0002", "test/seq_0003"]
