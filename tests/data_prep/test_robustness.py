"""Broken archives never stop a conversion and never reach the store; a killed conversion resumes exactly."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data_prep.base import ConversionReport, Converter, EventData, EventRef, StoreSpec
from data_prep.cli import main
from data_prep.composites import BomConverter, FmiConverter
from data_prep.runner import EventReader, convert, report_path
from data_prep.units import encoding_for_unit
from nowcast_pl.data.schema import StoreMetadata, StoreValidationError
from nowcast_pl.data.store import RadarStore
from tests.helpers import REPO
from tests.helpers.archives.operational import (
    BOM_NAME,
    bom_raw,
    fmi_dn,
    time_steps,
    truncate,
    write_bom_file,
    write_fmi_archive,
    write_fmi_file,
)

NAME = "%H%M_%Y%m%d"  # flat folder, names sort by clock time: files after midnight come first
T0 = dt.datetime(2020, 1, 31, 23, 30)


@pytest.fixture(scope="module")
def broken_archive(tmp_path_factory):
    """FMI-style archive across midnight with one of each problem; returns (root, DN by time)."""
    root = tmp_path_factory.mktemp("broken")
    gap = T0 + dt.timedelta(minutes=10)
    times = [t for t in time_steps(T0, 11) + time_steps(T0 + dt.timedelta(minutes=70), 4) if t != gap]
    written = write_fmi_archive(root, times, pattern=NAME + ".pgm.gz")
    at = {f"{t:%H%M}": root / f"{t:{NAME}}.pgm.gz" for t in times}
    truncate(at["2345"])
    at["2350"].write_bytes(b"<html>502 Bad Gateway</html>")
    write_fmi_file(at["0010"], fmi_dn(np.random.default_rng(9), (40, 40)), T0)
    write_fmi_file(at["0015"], np.full((48, 40), 255, np.uint8), T0)
    write_fmi_file(root / "0005_20200201_copy.pgm.gz", np.zeros((48, 40), np.uint8), T0)
    write_fmi_file(root / "0042_20200201.pgm.gz", np.zeros((48, 40), np.uint8), T0)
    write_fmi_file(root / "9960_20200201.pgm.gz", np.zeros((48, 40), np.uint8), T0)
    return root, written


def _fmi(root, **options):
    return FmiConverter(root, path_fmt="", fn_pattern=NAME + "*", **options)


def _entries(dst):
    return {(Path(e["file"]).name, e["action"]) for e in json.loads(report_path(dst).read_text())["entries"]}


def test_every_problem_is_reported_and_masked_never_written(broken_archive, tmp_path):
    root, written = broken_archive
    summary = convert(_fmi(root), tmp_path / "s.zarr", progress=False)
    assert _entries(tmp_path / "s.zarr") == {
        ("2340_20200131*.pgm.gz", "filled_missing"), ("2345_20200131.pgm.gz", "skipped"),
        ("2350_20200131.pgm.gz", "skipped"), ("0010_20200201.pgm.gz", "skipped"),
        ("0015_20200201.pgm.gz", "masked"), ("0005_20200201_copy.pgm.gz", "dropped_duplicate"),
        ("0042_20200201.pgm.gz", "skipped"), ("9960_20200201.pgm.gz", "skipped"),
        ("0040_20200201.pgm.gz", "note"),
        *{(f"{m}_20200131.pgm.gz", "reordered") for m in ("2330", "2335", "2345", "2350", "2355")},
    }
    store = RadarStore(tmp_path / "s.zarr")
    assert list(store.event_names) == ["fmi_20200131T233000", "fmi_20200201T004000"]
    valid = [t not in ("2340", "2345", "2350", "0010", "0015") for t in
             (f"{t:%H%M}" for t in time_steps(T0, 11))] + [True] * 4
    np.testing.assert_array_equal(store.frame_valid, valid)
    assert summary["frames_missing"] == 5 and summary["frames_written"] == 15
    raw = store.read_raw(0, len(store))
    np.testing.assert_array_equal(raw[~store.frame_valid], 255)
    want = [written[t.astype(object)] for t in store.times[store.frame_valid]]
    np.testing.assert_array_equal(raw[store.frame_valid], np.stack(want))


def test_parallel_conversion_writes_the_same_store(broken_archive, tmp_path):
    root, _ = broken_archive
    convert(_fmi(root, max_event_frames=3), tmp_path / "one.zarr", progress=False)
    convert(_fmi(root, max_event_frames=3), tmp_path / "two.zarr", workers=2, progress=False)
    one, two = RadarStore(tmp_path / "one.zarr"), RadarStore(tmp_path / "two.zarr")
    assert len(one.event_names) == 6 and list(one.event_names) == list(two.event_names)
    np.testing.assert_array_equal(one.times, two.times)
    np.testing.assert_array_equal(one.read_raw(0, len(one)), two.read_raw(0, len(two)))
    assert _entries(tmp_path / "one.zarr") == _entries(tmp_path / "two.zarr")


def test_bom_corrupt_and_foreign_grid_files_become_missing_frames(tmp_path):
    rng = np.random.default_rng(5)
    times = time_steps(dt.datetime(2020, 10, 31), 5, step_minutes=10)
    paths = [write_bom_file(tmp_path / "raw" / t.strftime(BOM_NAME), bom_raw(rng, (24, 20)), t) for t in times]
    truncate(paths[1], 0.3)
    write_bom_file(paths[3], bom_raw(rng, (20, 20)), times[3])
    store = tmp_path / "b.zarr"
    summary = convert(BomConverter(tmp_path / "raw"), store, progress=False)
    assert _entries(store) == {(paths[1].name, "skipped"), (paths[3].name, "skipped")}
    assert summary["frames_missing"] == 2
    np.testing.assert_array_equal(RadarStore(store).frame_valid, [1, 0, 1, 0, 1])


class Flaky(Converter):
    """Four 2-frame events: e1 raises while reading, e2 returns a frame of the wrong grid."""

    name = "flaky"

    def spec(self):
        meta = StoreMetadata(title="flaky", source="test", licence="none", citation="none", time_step_seconds=60)
        return StoreSpec(frame_shape=(4, 4), encoding=encoding_for_unit("dBZ", "flaky"), metadata=meta)

    def list_events(self, report):
        return [EventRef(f"e{i}", files=(f"f{i}",), info={"day": i}) for i in range(4)]

    def read_event(self, ref, report):
        if ref.name == "e1":
            raise OSError("disk on fire")
        side = 5 if ref.name == "e2" else 4
        times = np.datetime64("2020-01-01", "s") + np.arange(2) * 60 + ref.info["day"] * 86400
        return EventData(ref.name, times, np.full((2, side, side), ref.info["day"], np.uint8))


@pytest.mark.parametrize("workers", [1, 2])
def test_exceptions_while_reading_become_report_entries(tmp_path, workers):
    (tmp_path / "raw").mkdir()
    summary = convert(Flaky(tmp_path / "raw"), tmp_path / "f.zarr", workers=workers, progress=False)
    assert (summary["events_written"], summary["events_empty"]) == (2, 2)
    entries = json.loads(report_path(tmp_path / "f.zarr").read_text())["entries"]
    assert [(e["file"], e["event"], e["action"]) for e in entries] == [("f1", "e1", "skipped"),
                                                                        ("f2", "e2", "skipped")]
    assert "disk on fire" in entries[0]["reason"] and "grid" in entries[1]["reason"]
    assert list(RadarStore(tmp_path / "f.zarr").event_names) == ["e0", "e3"]


class Tracing(Flaky):
    """Records, in a file, each event a worker starts reading."""

    def read_event(self, ref, report):
        with open(self.src / "started", "a") as log:
            log.write(ref.name + "\n")
        return EventData(ref.name, np.array(["2020-01-01"], "datetime64[s]"), np.zeros((1, 4, 4), np.uint8))

    def list_events(self, report):
        return [EventRef(f"e{i:02d}") for i in range(24)]


def test_at_most_two_events_per_worker_are_read_ahead(tmp_path):
    converter = Tracing(tmp_path)
    with EventReader(converter, workers=2) as reader:
        for consumed, _ in enumerate(reader.read(converter.list_events(ConversionReport())), start=1):
            time.sleep(0.02)  # a slow writer: readers must wait for it
            started = len((tmp_path / "started").read_text().split())
            assert started <= consumed + 4


def _attrs(store: Path) -> dict:
    try:
        return json.loads((store / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return {}


def test_killed_conversion_resumes_to_the_one_shot_result(tmp_path):
    src = tmp_path / "raw"
    times = time_steps(dt.datetime(2020, 6, 1), 60)
    write_fmi_archive(src, times, shape=(192, 160), seed=3)
    truncate(src / times[1].strftime("%Y%m%d/%Y%m%d%H%M_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"))
    args = ["fmi", "--src", str(src), "--max-event-frames", "2", "--no-progress"]
    convert(FmiConverter(src, max_event_frames=2), tmp_path / "once.zarr", progress=False)
    killed = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "data_prep", *args, "--dst", str(killed)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    deadline = time.monotonic() + 120
    while _attrs(killed).get("n_events_committed", 0) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    attrs = _attrs(killed)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert 1 <= attrs["n_events_committed"] < 30 and not attrs["complete"]
    with pytest.raises(StoreValidationError, match="incomplete"):
        RadarStore(killed)
    assert main([*args, "--dst", str(killed)]) == 0
    once, resumed = RadarStore(tmp_path / "once.zarr"), RadarStore(killed)
    assert list(resumed.event_names) == list(once.event_names) and len(set(resumed.event_names)) == 30
    np.testing.assert_array_equal(resumed.times, once.times)
    np.testing.assert_array_equal(resumed.frame_valid, once.frame_valid)
    np.testing.assert_array_equal(resumed.read_raw(0, len(resumed)), once.read_raw(0, len(once)))
    report = json.loads(report_path(killed).read_text())
    assert report["summary"]["events_resumed"] >= 1
    assert sorted(map(json.dumps, report["entries"])) == sorted(
        map(json.dumps, json.loads(report_path(tmp_path / "once.zarr").read_text())["entries"]))
    assert not list(killed.rglob("*.partial")) and not killed.with_name("killed.zarr.report.partial.jsonl").exists()
