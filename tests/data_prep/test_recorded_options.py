"""A store records the options that shaped it; resuming or skipping it with other options is refused."""

import datetime as dt
import json
import shutil

import numpy as np
import pytest

from data_prep.cli import main
from nowcast_pl.data.store import RadarStore, RadarStoreWriter
from tests.helpers.archives.operational import time_steps, write_fmi_archive

SYNTHETIC = ["synthetic", "--events", "4", "--frames", "4", "--size", "16", "--no-progress"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _attrs(store) -> dict:
    return json.loads((store / "zarr.json").read_text())["attributes"]


def _interrupt_after(monkeypatch, n_events: int) -> None:
    """Make the writer raise KeyboardInterrupt (Ctrl-C) when it is about to append event ``n_events + 1``."""
    original = RadarStoreWriter.append_event

    def append_event(self, *args, **kwargs):
        if self.n_events >= n_events:
            raise KeyboardInterrupt
        original(self, *args, **kwargs)

    monkeypatch.setattr(RadarStoreWriter, "append_event", append_event)


def test_the_content_options_are_recorded_without_runner_options(tmp_path):
    assert main([*SYNTHETIC, "--seed", "3", "--workers", "2", "--dst", str(tmp_path / "s.zarr")]) == 0
    assert _attrs(tmp_path / "s.zarr")["conversion_options"] == {
        "source": "synthetic", "src": None, "events": 4, "seed": 3, "frames": 4, "size": 16,
        "missing_frame_rate": 0.0}


def test_resuming_with_another_seed_is_refused_and_the_same_seed_finishes_it(tmp_path, capsys, monkeypatch):
    dst = tmp_path / "s.zarr"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 2)
        assert main([*SYNTHETIC, "--dst", str(dst)]) == 130
    assert (_attrs(dst)["n_events_committed"], _attrs(dst)["complete"]) == (2, False)
    capsys.readouterr()
    assert main([*SYNTHETIC, "--seed", "1", "--dst", str(dst)]) == 1
    error = _one_line_error(capsys)
    assert f"{dst} was converted with other options: --seed 0 (this run: 1);" in error
    assert "same options" in error and "--overwrite" in error and "another --dst" in error
    assert (_attrs(dst)["n_events_committed"], _attrs(dst)["seed"]) == (2, 0)
    assert main([*SYNTHETIC, "--dst", str(dst)]) == 0
    assert main([*SYNTHETIC, "--dst", str(tmp_path / "clean.zarr")]) == 0
    resumed, clean = RadarStore(dst), RadarStore(tmp_path / "clean.zarr")
    assert list(resumed.event_names) == list(clean.event_names)
    np.testing.assert_array_equal(resumed.read_raw(0, len(resumed)), clean.read_raw(0, len(clean)))


def test_skip_if_complete_with_other_options_is_refused(tmp_path, capsys):
    dst = tmp_path / "s.zarr"
    assert main([*SYNTHETIC, "--dst", str(dst)]) == 0
    capsys.readouterr()
    assert main([*SYNTHETIC, "--events", "5", "--size", "32", "--dst", str(dst), "--skip-if-complete"]) == 1
    assert "--events 4 (this run: 5); --size 16 (this run: 32);" in _one_line_error(capsys)
    assert main([*SYNTHETIC, "--dst", str(dst), "--skip-if-complete"]) == 0
    assert "nothing to do" in capsys.readouterr().err


def test_resuming_from_another_src_or_with_other_archive_options_is_refused(tmp_path, capsys, monkeypatch):
    src = tmp_path / "raw"
    write_fmi_archive(src, time_steps(dt.datetime(2020, 1, 1), 6))
    shutil.copytree(src, tmp_path / "copy")
    dst = tmp_path / "f.zarr"
    args = ["fmi", "--dst", str(dst), "--no-progress", "--max-event-frames", "2"]
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 1)
        assert main([*args, "--src", str(src)]) == 130
    capsys.readouterr()
    assert main([*args, "--src", str(tmp_path / "copy")]) == 1
    assert f'--src "{src}" (this run: "{tmp_path / "copy"}")' in _one_line_error(capsys)
    assert main([*args, "--src", str(src), "--max-event-frames", "3", "--to-dbz"]) == 1
    error = _one_line_error(capsys)
    assert "--max-event-frames 2 (this run: 3); --to-dbz false (this run: true)" in error
    assert main([*args, "--src", str(src)]) == 0
    assert len(RadarStore(dst).event_names) == 3


@pytest.mark.parametrize("complete", [False, True])
def test_a_store_without_a_record_is_resumed_never_but_skipped_when_complete(tmp_path, capsys, monkeypatch,
                                                                              complete):
    dst = tmp_path / "s.zarr"
    with monkeypatch.context() as patch:
        if not complete:
            _interrupt_after(patch, 2)
        main([*SYNTHETIC, "--dst", str(dst)])
    meta = json.loads((dst / "zarr.json").read_text())
    del meta["attributes"]["conversion_options"]
    (dst / "zarr.json").write_text(json.dumps(meta))
    capsys.readouterr()
    status = main([*SYNTHETIC, "--dst", str(dst), "--skip-if-complete"])
    if complete:
        assert status == 0 and "nothing to do" in capsys.readouterr().err
    else:
        assert status == 1 and "records no conversion options" in _one_line_error(capsys)
