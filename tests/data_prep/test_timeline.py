"""The time grid of operational archives (``data_prep.timeline``): missing frames, split events, off-grid files."""

import datetime as dt

import numpy as np

from data_prep.base import ConversionReport
from data_prep.patterns import Match
from data_prep.timeline import Grid, build_events, infer_step_seconds
from tests.helpers.archives.operational import (
    T0,
)


def _matches(minutes):
    return [Match(tmp, T0 + dt.timedelta(minutes=m)) for m, tmp in zip(minutes, map(str, minutes), strict=True)]


def test_gap_of_one_step_is_a_missing_frame_and_longer_gaps_split():
    report = ConversionReport()
    events = build_events(
        _matches([0, 5, 15, 20, 40, 45]), Grid(300, max_gap=1), report, prefix="x", expected_path=lambda t: f"{t:%H%M}"
    )
    assert [e.name for e in events] == ["x_20210704T120000", "x_20210704T124000"]
    assert events[0].info["paths"] == ["0", "5", "", "15", "20"]
    assert np.diff(events[0].info["times"]).tolist() == [300] * 4
    assert {(e.file, e.action, e.event) for e in report.entries} == {
        ("1210", "filled_missing", "x_20210704T120000"),
        ("40", "note", ""),
    }


def test_off_grid_files_are_skipped_and_long_runs_are_chunked():
    report = ConversionReport()
    events = build_events(
        _matches([0, 5, 7, 10, 15, 20]), Grid(300, max_frames=2), report, prefix="x", expected_path=str
    )
    assert [e.info["paths"] for e in events] == [["0", "5"], ["10", "15"], ["20"]]
    assert [(e.file, e.action) for e in report.entries] == [("7", "skipped")]
    assert infer_step_seconds(_matches([0, 5, 10, 20, 25])) == 300
