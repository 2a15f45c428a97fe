"""File-name time patterns (``data_prep.patterns``): directives, wildcards, day of year, discovery."""

import datetime as dt

import pytest

from data_prep.patterns import TimePattern


def test_pattern_parses_directives_wildcards_and_day_of_year():
    pattern = TimePattern("%Y%m%d/AQC%y%j%H%M?_00005.801.gif")
    assert pattern.parse("20150515/AQC151351205V_00005.801.gif") == dt.datetime(2015, 5, 15, 12, 5)
    assert pattern.format(dt.datetime(2015, 5, 15, 12, 5)) == "20150515/AQC151351205?_00005.801.gif"
    with pytest.raises(ValueError, match="differs"):
        pattern.parse("20150516/AQC151351205V_00005.801.gif")
    with pytest.raises(ValueError, match="not a valid time"):
        TimePattern("%Y%m%d%H%M.h5").parse("201513011200.h5")


@pytest.mark.parametrize("bad", ["%H%M.gif", "%Y%b%d.gif", "/abs/%Y%m%d.gif"])
def test_pattern_rejects_patterns_without_a_date(bad):
    with pytest.raises(ValueError, match="time pattern"):
        TimePattern(bad)


def test_discovery_reports_files_with_impossible_times(tmp_path):
    for name in ("202101010000.x", "202113010000.x", "notes.txt"):
        (tmp_path / name).write_text("")
    found = TimePattern("%Y%m%d%H%M.x").discover(tmp_path)
    assert [m.path.name for m in found.matches] == ["202101010000.x"]
    assert [p.name for p, _ in found.rejected] == ["202113010000.x"]
