"""Which windows of consecutive frames a split may use.

A window is ``length = in_frames + out_frames`` frames that belong to one event, follow each other at exactly
the store's time step (no gap), contain at most ``max_missing`` missing frames, and lie inside the split's
date range. Window starts step by ``stride`` frames from the beginning of each event, so the same
configuration always yields the same windows (as the papers' sequential loaders do).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Split:
    """Selection of windows for one split (train, val, test or predict).

    Args:
        after: only times strictly after this UTC time (ISO 8601, e.g. ``"2019-01-01"``), or None.
        until: only times at or before this UTC time, or None. ``after``/``until`` follow the SEVIR
            convention ``after < t <= until``.
        date_of: what the date range applies to: ``"frames"`` (every frame of a window) or ``"event"``
            (the event's reference time, e.g. SEVIR's catalogue ``time_utc``, as the papers split SEVIR).
        events: only these event names, or None for all.
        event_pattern: only events whose name fully matches this regular expression, or None.
        stride: frames between consecutive window starts within an event (≥ 1).
    """

    after: str | None = None
    until: str | None = None
    events: list[str] | None = None
    event_pattern: str | None = None
    stride: int = 1
    date_of: Literal["frames", "event"] = "frames"

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"Split.stride must be >= 1, got {self.stride}")
        if self.date_of not in ("frames", "event"):
            raise ValueError(f"Split.date_of must be 'frames' or 'event', got {self.date_of!r}")
        for name in ("after", "until"):
            value = getattr(self, name)
            if value is not None:
                try:
                    np.datetime64(value, "s")
                except ValueError as err:
                    raise ValueError(f"Split.{name}={value!r} is not an ISO 8601 time") from err


def select_events(names: np.ndarray, split: Split, event_times: np.ndarray | None = None) -> np.ndarray:
    """Boolean (n_events,) selection of events by name list, pattern and (``date_of="event"``) date range.

    Raises:
        ValueError: if ``split.events`` names an event that is not in the store.
    """
    keep = np.ones(len(names), dtype=bool)
    if split.events is not None:
        unknown = sorted(set(split.events) - set(names.tolist()))
        if unknown:
            raise ValueError(f"Split.events names {len(unknown)} events not in the store, e.g. {unknown[:3]}")
        keep &= np.isin(names, split.events)
    if split.event_pattern is not None:
        pattern = re.compile(split.event_pattern)
        keep &= np.array([pattern.fullmatch(n) is not None for n in names], dtype=bool)
    if split.date_of == "event":
        if event_times is None:
            raise ValueError("Split.date_of='event' needs the store's event_time")
        keep &= _in_range(event_times, event_times, split)
    return keep


def _in_range(first: np.ndarray, last: np.ndarray, split: Split) -> np.ndarray:
    """``after < first`` and ``last <= until`` (each bound only when set)."""
    keep = np.ones(first.shape, dtype=bool)
    if split.after is not None:
        keep &= first > np.datetime64(split.after, "s")
    if split.until is not None:
        keep &= last <= np.datetime64(split.until, "s")
    return keep


def find_windows(
    times: np.ndarray,
    event: np.ndarray,
    frame_valid: np.ndarray,
    event_names: np.ndarray,
    *,
    event_times: np.ndarray | None = None,
    length: int,
    time_step: np.timedelta64,
    split: Split,
    max_missing: int = 0,
) -> np.ndarray:
    """Start indices of every usable window of a split.

    Args:
        times: (N,) datetime64 frame times of the store.
        event: (N,) int event index of each frame (contiguous runs).
        frame_valid: (N,) bool, False where a frame is missing.
        event_names: (n_events,) event names.
        event_times: (n_events,) datetime64 event reference times (needed for ``split.date_of="event"``).
        length: frames per window.
        time_step: the store's nominal time step.
        split: the split's selection rules.
        max_missing: largest number of missing frames a window may contain.

    Returns:
        (n_windows,) int64 indices of the first frame of each window, in store order.
    """
    n = times.size
    if n < length:
        return np.zeros(0, dtype=np.int64)
    start = np.arange(n - length + 1)
    # step_ok[i]: frame i follows frame i-1 by exactly one time step within the same event.
    step_ok = np.zeros(n, dtype=np.int64)
    step_ok[1:] = (np.diff(times) == time_step) & (event[1:] == event[:-1])
    steps = np.r_[0, np.cumsum(step_ok)]
    contiguous = steps[start + length] - steps[start + 1] == length - 1
    missing = np.r_[0, np.cumsum(~frame_valid)]
    few_missing = missing[start + length] - missing[start] <= max_missing
    event_start = np.r_[0, np.flatnonzero(np.diff(event)) + 1]
    on_stride = (start - event_start[event[start]]) % split.stride == 0
    chosen = select_events(event_names, split, event_times)[event[start]]
    in_range = _in_range(times[start], times[start + length - 1], split) if split.date_of == "frames" else True
    return start[contiguous & few_missing & on_stride & chosen & in_range].astype(np.int64)
