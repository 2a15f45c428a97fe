"""``--dst``: only a radar store or an empty folder is ever written into or replaced, never the source archive."""

import datetime as dt
import json
from pathlib import Path

import pytest

from data_prep.cli import main
from nowcast_pl.data.store import RadarStore
from tests.helpers.archives.operational import time_steps, write_fmi_archive

SYNTHETIC = ["synthetic", "--events", "2", "--frames", "4", "--size", "16", "--no-progress"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path → bytes), to check that nothing changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "raw"
    write_fmi_archive(root, time_steps(dt.datetime(2020, 1, 1), 3))
    return root


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_folder_that_is_not_a_store_is_neither_written_nor_deleted(tmp_path, capsys, overwrite):
    folder = tmp_path / "thesis"
    (folder / "chapters").mkdir(parents=True)
    (folder / "chapters" / "one.tex").write_text("precious")
    before = _tree(folder)
    assert main([*SYNTHETIC, "--dst", str(folder), *overwrite]) == 1
    error = _one_line_error(capsys)
    assert f"{folder} exists and is not a radar store nor an empty folder" in error and "--dst" in error
    assert _tree(folder) == before and sorted(p.name for p in folder.iterdir()) == ["chapters"]


def test_a_file_is_not_overwritten(tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("precious")
    assert main([*SYNTHETIC, "--dst", str(file), "--overwrite"]) == 1
    assert f"{file} exists and is not a radar store" in _one_line_error(capsys)
    assert file.read_text() == "precious"


@pytest.mark.parametrize("where, dst, message", [
    ("is", lambda src: src, "is the source archive"),
    ("inside", lambda src: src / "store.zarr", "lies inside the source archive"),
    ("contains", lambda src: src.parent, "contains the source archive"),
    ("link", lambda src: src.parent / "link.zarr", "is the source archive"),
])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_destination_overlapping_the_source_is_refused(archive, capsys, where, dst, message, overwrite):
    target = dst(archive)
    if where == "link":
        target.symlink_to(archive, target_is_directory=True)
    before = _tree(archive.parent)
    assert main(["fmi", "--src", str(archive), "--dst", str(target), "--no-progress", *overwrite]) == 1
    error = _one_line_error(capsys)
    assert f"--dst {target} {message} --src {archive}" in error
    assert _tree(archive.parent) == before


def test_overwrite_replaces_a_store_an_empty_folder_or_a_store_with_a_damaged_zarr_json(tmp_path, capsys):
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    assert main([*SYNTHETIC, "--dst", str(empty), "--overwrite"]) == 0
    assert main([*SYNTHETIC, "--seed", "1", "--dst", str(empty), "--overwrite"]) == 0
    assert RadarStore(empty).attrs["seed"] == 1
    (empty / "zarr.json").write_bytes(b"\xff\xfe garbage")
    assert main([*SYNTHETIC, "--dst", str(empty), "--overwrite"]) == 0
    assert json.loads((empty / "zarr.json").read_text())["attributes"]["complete"] is True


def test_overwrite_through_a_link_removes_the_link_not_its_target(tmp_path):
    store = tmp_path / "kept.zarr"
    assert main([*SYNTHETIC, "--dst", str(store)]) == 0
    before = _tree(store)
    link = tmp_path / "link.zarr"
    link.symlink_to(store, target_is_directory=True)
    assert main([*SYNTHETIC, "--dst", str(link), "--overwrite"]) == 0
    assert not link.is_symlink() and RadarStore(link).attrs["complete"]
    assert _tree(store) == before
