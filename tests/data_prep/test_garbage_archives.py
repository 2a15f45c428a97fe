"""Archives of random bytes in each raw layout: every file is reported, and a conversion without events fails.

A conversion that writes no event must not leave a *complete* store (``--skip-if-complete`` would skip it
forever); it exits 1 with one line naming the report, in which every unreadable file has its entry.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from data_prep.cli import main
from data_prep.runner import report_path

SEVIR_H5 = "data/vil/2019/SEVIR_VIL_STORMEVENTS_2019_0701_1231.h5"
SEVIR_OFFSETS = ":".join(str(m) for m in range(-120, 125, 5))


def _junk(path: Path, seed: int, size: int = 4000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def _sevir(root: Path) -> list[Path]:
    junk = [_junk(root / SEVIR_H5, 1)]
    (root / "CATALOG.csv").write_text(
        "id,file_name,file_index,img_type,time_utc,minute_offsets,pct_missing\n"
        f"S1,{SEVIR_H5.removeprefix('data/')},0,vil,2019-07-01 00:00:00,{SEVIR_OFFSETS},0\n")
    return junk


def _hko7(root: Path) -> list[Path]:
    return [_junk(root / f"radarPNG/2015/01/10/RAD1501100{k}0000.png", k) for k in range(3)]


def _cikm(root: Path) -> list[Path]:
    return [_junk(root / "train.txt", 2)]


def _shanghai_h5(root: Path) -> list[Path]:
    return [_junk(root / "shanghai.h5", 3)]


def _shanghai_png(root: Path) -> list[Path]:
    return [_junk(root / f"seq_0001/{k:04d}.png", 10 + k) for k in range(3)]


def _meteonet(root: Path) -> list[Path]:
    return [_junk(root / "reflectivity_old_NW_2016_08.1.npz", 4)]


LAYOUTS = {
    "sevir": (_sevir, []),
    "hko7": (_hko7, []),
    "cikm": (_cikm, []),
    "shanghai-h5": (_shanghai_h5, ["--grid", "64", "64"]),
    "shanghai-png": (_shanghai_png, ["--grid", "64", "64"]),
    "meteonet": (_meteonet, []),
}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _complete(store: Path) -> bool:
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    return attrs["complete"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_random_bytes_are_reported_and_the_conversion_fails(layout, tmp_path, capsys):
    write, options = LAYOUTS[layout]
    junk = write(tmp_path / "raw")
    dst = tmp_path / "out.zarr"
    argv = [layout.split("-")[0], "--src", str(tmp_path / "raw"), "--dst", str(dst), "--no-progress", *options]
    assert main(argv) == 1
    error = _one_line_error(capsys)
    assert f"no event of {tmp_path / 'raw'} could be converted" in error and str(report_path(dst)) in error
    entries = json.loads(report_path(dst).read_text())["entries"]
    reported = {e["file"] for e in entries if e["action"] == "skipped"}
    assert {str(p) for p in junk} <= reported, entries
    assert not _complete(dst)
    assert main([*argv, "--skip-if-complete"]) == 1, "an empty store must never count as complete"
    assert "could be converted" in _one_line_error(capsys)


@pytest.mark.parametrize("layout, fragment", [("shanghai-h5", "unreadable HDF5"),
                                              ("shanghai-png", "unreadable PNG")])
def test_random_shanghai_files_without_grid_name_the_file(layout, fragment, tmp_path, capsys):
    junk = LAYOUTS[layout][0](tmp_path / "raw")
    dst = tmp_path / "out.zarr"
    assert main(["shanghai", "--src", str(tmp_path / "raw"), "--dst", str(dst), "--no-progress"]) == 1
    error = _one_line_error(capsys)
    assert f"{junk[0]}: {fragment}" in error and "--grid" in error
    assert not dst.exists()


@pytest.mark.parametrize("source, file, fragment", [
    ("sevir", "CATALOG.csv", "is not a readable CSV"),
    ("hko7", "mask_dat.npz", "is not a readable mask_dat.npz"),
    ("meteonet", "radar_coords_NW.npz", "is not a readable radar_coords npz"),
])
def test_a_random_bytes_archive_wide_file_is_named_in_one_line(source, file, fragment, tmp_path, capsys):
    raw = tmp_path / "raw"
    {"sevir": _sevir, "hko7": _hko7, "meteonet": _meteonet}[source](raw)
    junk = _junk(raw / file, 5)
    assert main([source, "--src", str(raw), "--dst", str(tmp_path / "out.zarr"), "--no-progress"]) == 1
    assert f"{source}: {junk} {fragment}" in _one_line_error(capsys)
    assert not (tmp_path / "out.zarr").exists()
