"""The mlcast form's time axis (``nowcast_pl.data.mlcast``): missing times are the gaps on the smallest step."""

from __future__ import annotations

import numpy as np
import pytest

from nowcast_pl.data.mlcast import missing_times


def test_missing_times_are_the_gaps_on_the_smallest_step():
    times = np.array(["2020-01-01T00:00", "2020-01-01T00:05", "2020-01-01T00:20"], dtype="datetime64[s]")
    np.testing.assert_array_equal(missing_times(times),
                                  np.array(["2020-01-01T00:10", "2020-01-01T00:15"], dtype="datetime64[s]"))
    with pytest.raises(ValueError, match="time 2020-01-01T00:12:00 is not on the regular step of 300 s"):
        missing_times(np.append(times[:2], np.datetime64("2020-01-01T00:12", "s")))
