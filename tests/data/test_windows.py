import re

import numpy as np
import pytest

from nowcast_pl.data.windows import Split, find_windows

STEP = np.timedelta64(5, "m")


def _brute_force(times, event, valid, names, length, split, max_missing):
    starts = []
    for s in range(len(times) - length + 1):
        idx = range(s, s + length)
        if any(event[i] != event[s] for i in idx):
            continue
        if any(times[i + 1] - times[i] != STEP for i in range(s, s + length - 1)):
            continue
        if sum(not valid[i] for i in idx) > max_missing:
            continue
        first = int(np.flatnonzero(event == event[s])[0])
        if (s - first) % split.stride:
            continue
        if split.events is not None and names[event[s]] not in split.events:
            continue
        if split.event_pattern is not None and not re.fullmatch(split.event_pattern, names[event[s]]):
            continue
        if split.after is not None and not times[s] > np.datetime64(split.after):
            continue
        if split.until is not None and not times[s + length - 1] <= np.datetime64(split.until):
            continue
        starts.append(s)
    return np.array(starts, dtype=np.int64)


def _archive(seed):
    """Three events with a gap in the second and missing frames in the third, plus a back-to-back event."""
    rng = np.random.default_rng(seed)
    t0 = np.datetime64("2020-01-01T00:00")
    times = [t0 + np.arange(10) * STEP,
             t0 + np.timedelta64(1, "D") + np.r_[np.arange(6), np.arange(8, 14)] * STEP,
             t0 + np.timedelta64(2, "D") + np.arange(12) * STEP,
             t0 + np.timedelta64(2, "D") + np.arange(12, 20) * STEP]  # contiguous in time with event 2
    event = np.concatenate([np.full(len(t), i) for i, t in enumerate(times)])
    valid = rng.random(event.size) > 0.15
    names = np.array(["a", "b", "c", "d"], dtype=object)
    return np.concatenate(times), event, valid, names


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "split",
    [Split(), Split(stride=3), Split(events=["a", "c"]), Split(after="2020-01-02T00:05", until="2020-01-03T01:00"),
     Split(event_pattern="[bd]", stride=2)],
)
@pytest.mark.parametrize(("length", "max_missing"), [(4, 0), (5, 1), (7, 2)])
def test_windows_match_brute_force(seed, split, length, max_missing):
    times, event, valid, names = _archive(seed)
    got = find_windows(times, event, valid, names, length=length, time_step=STEP, split=split,
                       max_missing=max_missing)
    np.testing.assert_array_equal(got, _brute_force(times, event, valid, names, length, split, max_missing))


def test_windows_never_cross_events_or_gaps():
    times, event, _, names = _archive(0)
    valid = np.ones(event.size, bool)
    starts = find_windows(times, event, valid, names, length=6, time_step=STEP, split=Split())
    for s in starts:
        assert len(set(event[s:s + 6])) == 1
        assert (np.diff(times[s:s + 6]) == STEP).all()
    # Event "b" has a 2-step gap after its 6th frame: only its first run holds a 6-frame window.
    b_starts = starts[event[starts] == 1]
    assert b_starts.tolist() == [10, 16]
    # Events "c" and "d" are contiguous in time but still separate events.
    assert not any(event[s] == 2 and s + 6 > 38 for s in starts)


def test_window_longer_than_every_event_gives_none():
    times, event, valid, names = _archive(0)
    assert find_windows(times, event, valid, names, length=13, time_step=STEP, split=Split()).size == 0


def test_split_rejects_bad_values():
    with pytest.raises(ValueError, match="stride"):
        Split(stride=0)
    with pytest.raises(ValueError, match="Split.after='yesterday'"):
        Split(after="yesterday")


def test_unknown_event_names_are_an_error():
    times, event, valid, names = _archive(0)
    with pytest.raises(ValueError, match="not in the store"):
        find_windows(times, event, valid, names, length=3, time_step=STEP, split=Split(events=["zzz"]))


def test_event_date_split_selects_whole_events_by_reference_time():
    times, event, valid, names = _archive(0)
    valid[:] = True
    # Reference times: mid-event, as SEVIR's time_utc. Event "b" starts before the cut-off but its
    # reference time is after it, so by event date it belongs wholly to the later split.
    event_times = np.array([times[event == e][len(times[event == e]) // 2] for e in range(4)])
    cut = str(times[event == 1][0] + STEP)
    by_event = find_windows(times, event, valid, names, event_times=event_times, length=4, time_step=STEP,
                            split=Split(after=cut, date_of="event"))
    by_frames = find_windows(times, event, valid, names, event_times=event_times, length=4, time_step=STEP,
                             split=Split(after=cut))
    assert set(event[by_event]) == {1, 2, 3}
    assert 10 in by_event and 10 not in by_frames  # the first window of "b" starts at the cut-off
    with pytest.raises(ValueError, match="date_of"):
        Split(date_of="window")
