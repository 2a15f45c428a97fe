"""From timestamped files to events on a regular time grid.

Archives of operational composites are a stream of files, one per time step, with holes. This module turns
the discovered files into events, recording every decision in the conversion report:

1. sort by time (files found out of time order are reported as ``reordered``);
2. drop files that repeat an earlier time (``dropped_duplicate``; the first in path order is kept);
3. infer the time step (the most common interval) unless it is given;
4. walk the grid: a gap of up to ``max_gap`` missing steps becomes missing frames inside the event
   (``filled_missing``), a longer gap ends the event (``note``), a file off the grid is skipped
   (``skipped``), and an event longer than ``max_frames`` continues in a new event.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from data_prep.base import ConversionReport, EventRef
from data_prep.patterns import Match


@dataclass(frozen=True)
class Grid:
    """How files become events.

    Args:
        step_seconds: time step of the archive (s).
        max_gap: the longest run of missing steps kept inside an event as missing frames; longer gaps split.
        max_frames: the most frames in one event (bounds the memory of reading one event).
    """

    step_seconds: int
    max_gap: int = 1
    max_frames: int = 144

    def __post_init__(self) -> None:
        if self.step_seconds <= 0 or self.max_gap < 0 or self.max_frames < 1:
            raise ValueError(f"invalid grid {self}: need step_seconds > 0, max_gap >= 0, max_frames >= 1")


def order_files(matches: list[Match], report: ConversionReport) -> list[Match]:
    """Sort files by time and drop repeated times, reporting both.

    Args:
        matches: files in discovery (path) order.
        report: receives a ``reordered`` entry per file found after a later one, and a
            ``dropped_duplicate`` entry per file whose time was already taken.

    Returns:
        Files with strictly increasing times.
    """
    latest: Match | None = None
    for match in matches:
        if latest is not None and match.time < latest.time:
            report.add(match.path, f"time {match.time:%Y-%m-%d %H:%M:%S} comes before that of {latest.path} "
                       "in path order; files are sorted by time", "reordered")
        if latest is None or match.time > latest.time:
            latest = match
    kept: dict[dt.datetime, Match] = {}
    for match in sorted(matches, key=lambda m: m.time):
        first = kept.setdefault(match.time, match)
        if first is not match:
            report.add(match.path, f"same time {match.time:%Y-%m-%d %H:%M:%S} as {first.path}, which is kept",
                       "dropped_duplicate")
    return list(kept.values())


def infer_step_seconds(matches: list[Match]) -> int:
    """The most common interval between consecutive (sorted, unique) times, in seconds.

    Raises:
        ValueError: with fewer than two files, where no interval exists.
    """
    if len(matches) < 2:
        raise ValueError(f"cannot infer the time step from {len(matches)} file(s); pass --timestep (minutes)")
    steps = Counter(int((b.time - a.time).total_seconds()) for a, b in zip(matches, matches[1:], strict=False))
    return steps.most_common(1)[0][0]


def build_events(
    matches: list[Match],
    grid: Grid,
    report: ConversionReport,
    *,
    prefix: str,
    expected_path: Callable[[dt.datetime], str],
) -> list[EventRef]:
    """Group time-sorted, unique files into events on the time grid.

    Args:
        matches: output of :func:`order_files`.
        grid: time step, gap and length limits.
        report: receives missing frames, splits and off-grid files.
        prefix: event names are ``f"{prefix}_{start:%Y%m%dT%H%M%S}"`` (stable across reruns).
        expected_path: the file a missing time would have had (for the report).

    Returns:
        Events whose ``info`` holds ``times`` (epoch seconds on the grid) and ``paths`` ("" where missing).
    """
    step = dt.timedelta(seconds=grid.step_seconds)
    runs: list[list[tuple[dt.datetime, str]]] = []
    for match in matches:
        run = runs[-1] if runs else None
        if run and (match.time - run[0][0]) % step:
            report.add(match.path, f"time {match.time:%Y-%m-%d %H:%M:%S} is off the {grid.step_seconds}-s grid "
                       f"of the event starting {run[0][0]:%Y-%m-%d %H:%M:%S}", "skipped")
            continue
        missing = (match.time - run[-1][0]) // step - 1 if run else 0
        if run is None or missing > grid.max_gap:
            if run is not None:
                report.add(match.path, f"gap of {missing} missing steps before this file (> --max-gap "
                           f"{grid.max_gap}): a new event starts", "note")
            runs.append([(match.time, str(match.path))])
            continue
        run.extend((run[-1][0] + k * step, "") for k in range(1, missing + 1))
        run.append((match.time, str(match.path)))
    events = []
    for run in runs:
        for start in range(0, len(run), grid.max_frames):
            chunk = _strip_missing(run[start:start + grid.max_frames])
            if chunk:
                events.append(_event(chunk, prefix, grid, report, expected_path))
    return events


def _strip_missing(slots: list[tuple[dt.datetime, str]]) -> list[tuple[dt.datetime, str]]:
    """Drop missing slots at both ends (a chunk boundary can fall inside a gap)."""
    present = [i for i, (_, path) in enumerate(slots) if path]
    return slots[present[0]:present[-1] + 1] if present else []


def _event(
    slots: list[tuple[dt.datetime, str]],
    prefix: str,
    grid: Grid,
    report: ConversionReport,
    expected_path: Callable[[dt.datetime], str],
) -> EventRef:
    name = f"{prefix}_{slots[0][0]:%Y%m%dT%H%M%S}"
    for time, path in slots:
        if not path:
            report.add(expected_path(time), f"no file for {time:%Y-%m-%d %H:%M:%S} (gap <= --max-gap "
                       f"{grid.max_gap}): stored as a missing frame", "filled_missing", name)
    epoch = dt.datetime(1970, 1, 1)
    paths = [path for _, path in slots]
    return EventRef(
        name=name,
        files=tuple(path for path in paths if path),
        info={"times": [int((t - epoch).total_seconds()) for t, _ in slots], "paths": paths},
    )
