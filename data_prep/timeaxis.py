"""Time axes of converted events: cleaning source timestamps, regular grids, synthetic times.

Every converter ends up with the same three problems: source timestamps that repeat or come out of order,
gaps in a nominally regular series (missing frames are kept as ``frame_valid=False`` rows, never dropped),
and archives without absolute times (Shanghai PNG folders, CIKM lines), which get *synthetic* times. All times
are ``datetime64[s]``, UTC.
"""

from __future__ import annotations

import numpy as np

from data_prep.base import ConversionReport

#: First synthetic time. Synthetic events are laid end to end from here, each starting on a new UTC day.
SYNTHETIC_EPOCH = np.datetime64("2000-01-01T00:00:00", "s")
_DAY = np.timedelta64(86400, "s")


def order_unique(times: np.ndarray, report: ConversionReport, *, file: str, event: str) -> np.ndarray:
    """Indices that put ``times`` in increasing order, keeping the first of each repeated timestamp.

    Out-of-order and duplicated timestamps are recorded in ``report`` (actions ``reordered`` and
    ``dropped_duplicate``), one entry each per call.

    Args:
        times: (N,) datetime64 source timestamps, in source order.
        report: where problems are recorded.
        file: the source file, for the report.
        event: the event name, for the report.

    Returns:
        (M,) int64 indices into ``times``, M ≤ N, such that ``times[idx]`` increases strictly.
    """
    times = np.asarray(times, dtype="datetime64[s]")
    order = np.argsort(times, kind="stable")
    if np.any(np.diff(times.astype(np.int64)) < 0):
        report.add(file, "timestamps out of order; frames sorted by time", "reordered", event)
    repeated = np.r_[False, np.diff(times[order].astype(np.int64)) == 0]
    if repeated.any():
        first = times[order][repeated][0]
        report.add(file, f"{int(repeated.sum())} duplicated timestamp(s), e.g. {first}; kept the first frame",
                   "dropped_duplicate", event)
    return order[~repeated].astype(np.int64)


def regular_axis(times: np.ndarray, step_seconds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regular time axis from the first to the last of ``times``, with a slot for every missing step.

    Args:
        times: (N,) datetime64, strictly increasing, N ≥ 1.
        step_seconds: nominal interval between frames (s).

    Returns:
        axis: (T,) datetime64[s], ``times[0] + k * step`` for k = 0 … T-1 (T ≥ N' below).
        slot: (N,) int64 position in ``axis`` of each time, -1 where the time is off the grid.
        on_grid: (N,) bool, False where ``times[i] - times[0]`` is not a multiple of the step.
    """
    seconds = np.asarray(times, dtype="datetime64[s]").astype(np.int64)
    offset = seconds - seconds[0]
    on_grid = offset % step_seconds == 0
    slot = np.where(on_grid, offset // step_seconds, -1).astype(np.int64)
    n_slots = int(slot.max()) + 1
    axis = np.datetime64(int(seconds[0]), "s") + np.arange(n_slots) * np.timedelta64(step_seconds, "s")
    return axis, slot, on_grid


def to_regular_axis(
    times: np.ndarray, step_seconds: int, report: ConversionReport, *, file: str, event: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort, de-duplicate and place source timestamps on a regular axis, reporting every problem.

    Timestamps off the grid of the event's first frame are skipped (``skipped``); steps without a timestamp
    become missing frames (``filled_missing``); both get one report entry per call.

    Args:
        times: (N,) datetime64 source timestamps, N ≥ 1, in source order.
        step_seconds: nominal interval between frames (s).
        report: where problems are recorded.
        file: the source file, for the report.
        event: the event name, for the report.

    Returns:
        axis: (T,) datetime64[s] regular times.
        take: (M,) int64 indices into ``times`` of the frames to keep.
        slot: (M,) int64 position in ``axis`` of each kept frame (the other slots are missing frames).
    """
    keep = order_unique(times, report, file=file, event=event)
    axis, slot, on_grid = regular_axis(np.asarray(times, dtype="datetime64[s]")[keep], step_seconds)
    if not on_grid.all():
        stray = np.asarray(times, dtype="datetime64[s]")[keep][~on_grid]
        report.add(file, f"{stray.size} timestamp(s) off the {step_seconds} s grid of the event, e.g. {stray[0]}; "
                   "frames skipped", "skipped", event)
    valid = np.zeros(axis.size, dtype=bool)
    valid[slot[on_grid]] = True
    if not valid.all():
        report.add(file, describe_missing(axis, valid) + " recorded as frame_valid=False", "filled_missing", event)
    return axis, keep[on_grid], slot[on_grid]


def synthetic_starts(lengths: list[int] | np.ndarray, step_seconds: int) -> np.ndarray:
    """Start times for events without absolute time, laid end to end from :data:`SYNTHETIC_EPOCH`.

    Event k starts at midnight UTC of the first day after event k-1 ends, so events never overlap and an
    event of up to 240 six-minute frames occupies exactly one day. The times carry no meteorological meaning;
    select splits of such stores by event name, not by date.

    Args:
        lengths: (K,) frames per event, in store order.
        step_seconds: interval between frames (s).

    Returns:
        (K,) datetime64[s] first-frame times.
    """
    span = np.asarray(lengths, dtype=np.int64) * step_seconds
    days = np.maximum(1, -(-span // 86400))
    first_day = np.cumsum(days) - days  # days before each event; empty for no event
    return SYNTHETIC_EPOCH + first_day * _DAY


def frame_times(start: np.datetime64, n_frames: int, step_seconds: int) -> np.ndarray:
    """(n_frames,) datetime64[s] times ``start + k * step``."""
    return np.datetime64(start, "s") + np.arange(n_frames) * np.timedelta64(step_seconds, "s")


def describe_missing(times: np.ndarray, valid: np.ndarray, limit: int = 3) -> str:
    """Short text naming how many frames are missing and the first few of their times."""
    missing = np.asarray(times)[~np.asarray(valid, bool)]
    shown = ", ".join(str(t) for t in missing[:limit])
    more = ", …" if missing.size > limit else ""
    return f"{missing.size} missing frame(s) ({shown}{more})"
