"""Rain-rate conversions of the baselines: round trips, Marshall-Palmer, accumulations, the dB transform."""

import numpy as np
import pytest

from nowcast_pl.models.baselines.rain_rate import from_rain_rate, rain_rate_db, rain_rate_from_db, to_rain_rate


def test_rain_rate_conversions_round_trip_and_follow_marshall_palmer():
    dbz = np.array([-10.0, 0.0, 23.0, 55.0])
    rate = to_rain_rate(dbz, "dBZ", 5.0)
    np.testing.assert_allclose(200 * rate**1.6, 10 ** (dbz / 10))  # Z = 200 R^1.6
    np.testing.assert_allclose(from_rain_rate(rate, "dBZ", 5.0), dbz, atol=1e-12)
    assert to_rain_rate(np.array([0.5]), "mm", 10.0) == pytest.approx(3.0)  # 0.5 mm in 10 min = 3 mm/h
    np.testing.assert_allclose(from_rain_rate(np.array([3.0]), "mm", 10.0), [0.5])
    np.testing.assert_allclose(rain_rate_from_db(rain_rate_db(np.array([0.0, 0.05, 0.1, 4.0]))), [0, 0, 0.1, 4.0])
