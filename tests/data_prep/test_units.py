"""Unit encodings of the converters (``data_prep.units``): clipping counted, Z-R conversion keeps no-data."""

import numpy as np

from data_prep.units import encode_clipped, encoding_for_unit, rain_to_dbz, valid_raw_range


def test_unit_encodings_clip_and_count_out_of_range_values():
    dbz = encoding_for_unit("dBZ", "x")
    assert valid_raw_range(dbz) == (0, 254)
    raw, clipped = encode_clipped(np.array([[np.nan, -40.0, -32.0, 20.5, 99.0]]), dbz)
    assert raw.tolist() == [[255, 0, 0, 105, 254]] and clipped == 2
    mm = encoding_for_unit("mm", "x")
    raw, clipped = encode_clipped(np.array([-0.001, 0.004, 0.006, 700.0]), mm)
    assert raw.tolist() == [0, 0, 1, 65534] and clipped == 1


def test_rain_to_dbz_follows_z_r_and_keeps_no_data():
    acc = np.array([0.0, 1.0, np.nan])  # mm in 5 min: 12 mm/h
    dbz = rain_to_dbz(acc, "mm", accutime_minutes=5, zr_a=200.0, zr_b=1.6, floor_dbz=-32.0)
    np.testing.assert_allclose(dbz[:2], [-32.0, 10 * np.log10(200 * 12.0**1.6)])
    assert np.isnan(dbz[2])
