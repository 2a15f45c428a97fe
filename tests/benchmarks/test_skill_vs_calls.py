"""``benchmarks.skill_vs_calls``: each target carries the paired ratio or difference of the report's bootstrap,
and ``met`` follows the point estimate."""

import numpy as np
import pytest

from benchmarks.skill_vs_calls import SETUPS, paired, targets
from nowcast_pl.report.intervals import BootstrapSettings, ScoreIntervals
from tests.helpers.ensembles import event_statistics, fields


def _intervals(noise_by_source: dict[str, float]) -> ScoreIntervals:
    statistics = {}
    for name, noise in noise_by_source.items():
        truths, forecasts = fields(6, seed=1, noise=noise)  # one seed: the same truth and noise for every source
        statistics[name] = event_statistics(truths, forecasts)
    return ScoreIntervals(statistics, range(6), [f"e{i}" for i in range(6)], BootstrapSettings(resamples=300))


def test_raindiff_targets_are_paired_ratios_and_differences_of_the_sources():
    intervals = _intervals({"ddim_250": 8.0, "student_4": 8.0, "dpmpp_2m_4": 12.0, "student_1": 16.0})
    result = targets("raindiff", SETUPS["raindiff"], intervals)
    same = result["student4_crps_within_3pct_of_ddim250"]
    assert same["value"] == pytest.approx(1.0) and same["interval"] == pytest.approx([1.0, 1.0]) and same["met"]
    spread = result["student4_spread_skill_within_10pct_of_ddim250"]
    assert spread["value"] == pytest.approx(1.0) and spread["met"]
    against = result["student4_crps_below_dpmpp_2m_4"]
    crps = {name: intervals.estimates[name]["crps"] for name in ("student_4", "dpmpp_2m_4")}
    assert against["value"] == pytest.approx(crps["student_4"] - crps["dpmpp_2m_4"]) and against["met"]
    assert against["interval"][0] <= against["value"] <= against["interval"][1] < 0
    assert result["student1_crps_reported"]["value"] == pytest.approx(intervals.estimates["student_1"]["crps"])


def test_a_missed_target_is_reported_with_its_interval():
    intervals = _intervals({"ddim_20": 8.0, "student_2": 12.0})
    missed = targets("stldm", SETUPS["stldm"], intervals)["student2_crps_within_3pct_of_guided_ddim20"]
    ratio = intervals.estimates["student_2"]["crps"] / intervals.estimates["ddim_20"]["crps"]
    assert missed["value"] == pytest.approx(ratio) and ratio > 1.03 and not missed["met"]
    low, high = missed["interval"]
    assert low < ratio < high
    assert paired(intervals, "student_2", "ddim_20", "crps", np.divide).estimate == pytest.approx(ratio)
