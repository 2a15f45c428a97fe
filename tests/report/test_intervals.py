"""Report intervals (``nowcast_pl.report.intervals``): event sums give the collection's scores; how ``nowcast report``
prints intervals and paired comparisons."""

import math

import pytest

from tests.helpers.ensembles import event_statistics, fields


def test_event_sums_give_the_collection_scores_and_duplicated_windows_do_not_narrow_intervals():
    from nowcast_pl.metrics import flatten_scores
    from nowcast_pl.metrics.bootstrap import totals
    from nowcast_pl.report.intervals import ScoreIntervals, table_score_function

    truths, forecasts = fields(8, seed=0)
    stats = event_statistics(truths, forecasts)
    computed = {key: float(value) for key, value in flatten_scores(stats.metrics.compute()).items()}
    recomputed = table_score_function(stats.metrics)(totals(stats.per_event(range(8))))
    assert len(recomputed) == (2 * 2 + 2 * 2 + 3) * 3  # (csi, hss, fss x 2 scales) x thresholds, crps, mae, spread
    for key, value in recomputed.items():
        assert value[0] == pytest.approx(computed[key], rel=1e-5, abs=1e-6), key
    settings = dict(events=range(8), event_names=[f"e{i}" for i in range(8)])
    from nowcast_pl.report.intervals import BootstrapSettings

    once = ScoreIntervals({"a": stats}, settings=BootstrapSettings(resamples=400), **settings)
    # Every window of every event counted twice: the events are the same, so are the intervals.
    twice = ScoreIntervals({"a": event_statistics(truths, forecasts, repeat=2)}, settings=BootstrapSettings(400),
                           **settings)
    for key in ("csi@20dBZ", "crps", "fss@35dBZ/s4/lead_02", "spread_skill"):
        assert twice.interval("a", key).low == pytest.approx(once.interval("a", key).low, rel=1e-9)
        assert twice.interval("a", key).high == pytest.approx(once.interval("a", key).high, rel=1e-9)
    # Resampling these 2 x 16 windows as if they were independent narrows the CRPS interval about 2-fold.
    windows = event_statistics([t[i:i + 1] for t in truths for i in range(2) for _ in range(2)],
                               [f[i:i + 1] for f in forecasts for i in range(2) for _ in range(2)])
    naive = ScoreIntervals({"a": windows}, range(32), [str(i) for i in range(32)], BootstrapSettings(400))
    width = once.interval("a", "crps").high - once.interval("a", "crps").low
    assert naive.interval("a", "crps").high - naive.interval("a", "crps").low < width / 1.5


def comparison_output(capsys, statistics, n_events):
    from nowcast_pl.report.cli import print_comparisons
    from nowcast_pl.report.intervals import BootstrapSettings, ScoreIntervals
    from nowcast_pl.report.sources import EvaluationSettings

    intervals = ScoreIntervals(statistics, range(n_events), [str(e) for e in range(n_events)],
                               BootstrapSettings(resamples=300))
    scores = {name: {key: float(value) for key, value in intervals.estimates[name].items()} for name in statistics}
    status = print_comparisons(scores, intervals, "good", EvaluationSettings("pysteps", (20.0, 35.0), 3), "dBZ",
                               ["twin"])
    return status, capsys.readouterr().out.splitlines(), intervals


def test_comparison_lines_give_paired_differences_and_say_not_significant(capsys):
    truths, forecasts = fields(6, seed=1)
    _, noisy = fields(6, seed=1, noise=25.0)
    statistics = {"good": event_statistics(truths, forecasts), "twin": event_statistics(truths, forecasts),
                  "noisy": event_statistics(truths, noisy)}
    status, lines, intervals = comparison_output(capsys, statistics, 6)
    twin, noisy_line = (next(line for line in lines if f" {name}: " in line) for name in ("twin", "noisy"))
    assert status == 1 and twin.startswith("good does NOT beat twin: csi@20dBZ")  # a tie is not a win
    assert twin.count("+0.000 [+0.000, +0.000], not significant") == 2
    crps = intervals.difference("good", "noisy", "crps")
    assert crps.high < 0 and "not significant" not in noisy_line.split("CRPS")[1]
    assert f"better, {crps.estimate:+.3f} [{crps.low:+.3f}, {crps.high:+.3f}])" in noisy_line


def test_one_event_gives_no_interval_and_a_clear_message(capsys):
    from nowcast_pl.report.tables import table_rows

    truths, forecasts = fields(1, seed=2)
    statistics = {"good": event_statistics(truths, forecasts), "twin": event_statistics(truths, forecasts)}
    _, lines, intervals = comparison_output(capsys, statistics, 1)
    assert "CRPS" in lines[0] and lines[0].endswith("dBZ (worse, +0.000, no interval)")
    assert intervals.describe("test") == ("no intervals: the test split has 1 event (a bootstrap over events needs "
                                          "at least 2); add events to the split")
    rows = table_rows(intervals.estimates, thresholds=(20.0,), unit="dBZ", out_frames=2, time_step_minutes=5.0,
                      fss_scale=4, intervals=intervals)
    assert list(rows[0])[3:9] == ["csi", "csi_lo", "csi_hi", "hss", "hss_lo", "hss_hi"]
    assert math.isfinite(rows[0]["crps"]) and math.isnan(rows[0]["crps_lo"]) and math.isnan(rows[0]["csi_hi"])
