"""A conversion killed (SIGKILL) at seeded random moments, mid-write and mid-finalisation, then re-run with the
same command, equals a clean conversion: every array's values, the store's attributes, completeness, report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from nowcast_pl.data.store import RadarStore
from tests.helpers import REPO

COMMAND = ["synthetic", "--events", "24", "--frames", "8", "--size", "64", "--seed", "11",
           "--missing-frame-rate", "0.1", "--workers", "1", "--no-progress", "--skip-if-complete"]
ARRAYS = ("frames", "time", "event", "frame_valid", "event_name", "event_time")
# Runs nowcast-prep in a process that kills itself (SIGKILL) on the n-th call of one function.
SELF_KILL = """
import os, signal, sys
from data_prep.cli import main
owner, name, target, when = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
module, attr = owner.rsplit(".", 1)
holder = getattr(__import__(module, fromlist=[attr]), attr)
original, calls = getattr(holder, name), []
def deadly(*args, **kwargs):
    if target in ("", getattr(args[0], "basename", None)):
        calls.append(1)
        if len(calls) == when:
            os.kill(os.getpid(), signal.SIGKILL)
    return original(*args, **kwargs)
setattr(holder, name, deadly)
sys.exit(main(sys.argv[5:]))
"""


def _start(dst: Path, prefix: list[str] | None = None) -> subprocess.Popen:
    args = prefix or ["-m", "data_prep"]
    return subprocess.Popen([sys.executable, *args, *COMMAND, "--dst", str(dst)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _attrs(dst: Path) -> dict:
    return json.loads((dst / "zarr.json").read_text())["attributes"]


def _clean(dst: Path) -> tuple[float, float]:
    """Convert without interruption; return (seconds until the store appears, seconds in all)."""
    start, appeared = time.monotonic(), None
    proc = _start(dst)
    while proc.poll() is None:
        if appeared is None and (dst / "zarr.json").exists():
            appeared = time.monotonic() - start
        time.sleep(0.002)
    assert proc.returncode == 0, proc.stderr.read().decode()
    return appeared, time.monotonic() - start


def _committed(dst: Path) -> int:
    try:
        return _attrs(dst)["n_events_committed"]
    except (OSError, ValueError, KeyError):  # not created yet, or caught while being replaced
        return 0


def _kill_while_writing(dst: Path, seconds: float) -> None:
    """Start the conversion and kill it ``seconds`` after it commits its first event (start-up times vary)."""
    before = _committed(dst)
    proc = _start(dst)
    while proc.poll() is None and _committed(dst) == before:
        time.sleep(0.002)
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _kill_inside(dst: Path, owner: str, name: str, target: str, when: int) -> None:
    proc = _start(dst, ["-c", SELF_KILL, owner, name, target, str(when)])
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()


def _assert_same_store(got: Path, want: Path) -> None:
    a, b = zarr.open_group(str(got), mode="r"), zarr.open_group(str(want), mode="r")
    for name in ARRAYS:
        np.testing.assert_array_equal(a[name][:], b[name][:], err_msg=name)
        assert dict(a[name].attrs) == dict(b[name].attrs), name
    named = {"conversion_report": got.name + ".report.json"}  # the one attribute that names the store itself
    assert dict(a.attrs) == {**dict(b.attrs), **named}
    assert json.loads((got / "zarr.json").read_text())["consolidated_metadata"] == json.loads(
        (want / "zarr.json").read_text())["consolidated_metadata"]
    report = json.loads(got.with_name(got.name + ".report.json").read_text())
    clean = json.loads(want.with_name(want.name + ".report.json").read_text())
    assert report["entries"] == clean["entries"]
    assert report["summary"]["store_frames"] == clean["summary"]["store_frames"]


@pytest.mark.timing
def test_killed_conversions_resume_to_the_clean_store(tmp_path):
    clean, killed = tmp_path / "clean.zarr", tmp_path / "killed.zarr"
    appeared, total = _clean(clean)
    rng = np.random.default_rng(2026)
    for _ in range(3):  # each kill lands in the first tenth of the writing, so progress stays partial
        _kill_while_writing(killed, rng.uniform(0.0, 0.1) * (total - appeared))
    # Mid-write: the frames of the next event are written (arrays resized) but the event is not committed.
    _kill_inside(killed, "zarr.Array", "__setitem__", "event_name", when=2)
    attrs = _attrs(killed)
    frames_on_disk = json.loads((killed / "frames" / "zarr.json").read_text())["shape"][0]
    assert not attrs["complete"] and frames_on_disk > attrs["n_frames_committed"] > 0
    _kill_while_writing(killed, rng.uniform(0.0, 0.1) * (total - appeared))
    # Mid-finalisation: the metadata is consolidated but the store not yet marked complete.
    _kill_inside(killed, "nowcast_pl.data.store", "consolidate", "", when=1)
    assert not _attrs(killed)["complete"]
    proc = _start(killed)
    assert proc.wait() == 0, proc.stderr.read().decode()
    assert RadarStore(killed).attrs["complete"]
    _assert_same_store(killed, clean)
    assert not list(killed.rglob("*.partial"))
    assert not killed.with_name("killed.zarr.report.partial.jsonl").exists()
