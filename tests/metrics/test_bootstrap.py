"""Bootstrap intervals over events (``nowcast_pl.metrics.bootstrap``) against closed forms; paired contrasts."""

import math

import numpy as np
import pytest

from nowcast_pl.metrics.bootstrap import (
    event_bootstrap,
    paired_event_bootstrap,
    replicate_scores,
    resample_counts,
)


def mean_score(stats):
    """Mean of per-window values from per-event sums and window counts."""
    return {"mean": stats["sum"] / stats["count"]}


def csi_score(stats):
    return {"csi": stats["hits"] / (stats["hits"] + stats["misses"] + stats["false_alarms"])}


def test_bootstrap_standard_error_of_a_mean_matches_the_closed_form():
    # Equal weights (one value per event): the bootstrap variance of the mean is (1/n²) Σ (x - x̄)², i.e. the
    # standard error sqrt((n-1)/n) s / sqrt(n) (Efron & Tibshirani 1993, eq. 5.11).
    values = np.random.default_rng(1).gamma(2.0, 3.0, size=25)
    stats = {"sum": values, "count": np.ones_like(values)}
    counts = resample_counts(values.size, n_resamples=4000, seed=0)
    replicates = replicate_scores(stats, mean_score, counts)["mean"]
    closed_form = math.sqrt((values.size - 1) / values.size) * values.std(ddof=1) / math.sqrt(values.size)
    assert replicates.std() == pytest.approx(closed_form, rel=0.05)  # Monte-Carlo error ~ 1/sqrt(2R) = 1.1 %
    assert replicates.mean() == pytest.approx(values.mean(), abs=0.1 * closed_form)


def test_percentile_interval_of_a_hit_rate_is_the_binomial_quantiles():
    # k hits among n one-window events: a resample's hit rate is Binomial(n, k/n) / n, whose quantiles are exact.
    n, k = 40, 12
    stats = {"sum": np.r_[np.ones(k), np.zeros(n - k)], "count": np.ones(n)}
    interval = event_bootstrap(stats, mean_score, n_resamples=20000, seed=3)["mean"]
    cdf = np.cumsum([math.comb(n, j) * (k / n) ** j * (1 - k / n) ** (n - j) for j in range(n + 1)])
    low, high = np.searchsorted(cdf, 0.025) / n, np.searchsorted(cdf, 0.975) / n
    assert interval.estimate == k / n
    assert interval.low == pytest.approx(low, abs=1 / n) and interval.high == pytest.approx(high, abs=1 / n)
    assert interval.low < k / n < interval.high


def test_ratio_scores_are_recomputed_from_summed_counts_not_averaged_per_event():
    # A large event with CSI 0.9 and a small one with CSI 0.1: the pooled CSI is (90 + 1) / (100 + 10).
    stats = {"hits": np.array([90.0, 1.0]), "misses": np.array([5.0, 4.0]), "false_alarms": np.array([5.0, 5.0])}
    interval = event_bootstrap(stats, csi_score, n_resamples=500, seed=0)["csi"]
    assert interval.estimate == pytest.approx(91 / 110)
    assert interval.low == pytest.approx(0.1) and interval.high == pytest.approx(0.9)  # both events alone occur


def test_paired_interval_uses_the_same_events_for_both_forecasts():
    # The candidate is the baseline plus 0.1 on every event: every resampled difference is exactly 0.1, however
    # much the events differ, while unpaired intervals of the two overlap.
    values = np.random.default_rng(0).normal(0.0, 1.0, size=30)
    baseline = {"sum": values, "count": np.ones(30)}
    candidate = {"sum": values + 0.1, "count": np.ones(30)}
    difference = paired_event_bootstrap(candidate, baseline, mean_score, n_resamples=300, seed=0)["mean"]
    assert difference.estimate == pytest.approx(0.1)
    assert difference.low == pytest.approx(0.1) and difference.high == pytest.approx(0.1)
    assert not difference.contains(0.0)
    alone = event_bootstrap(baseline, mean_score, n_resamples=300, seed=0)["mean"]
    assert alone.contains(values.mean() + 0.1)


def test_one_event_gives_an_undefined_interval_and_mismatched_events_are_refused():
    one = {"sum": np.array([3.0]), "count": np.array([2.0])}
    interval = event_bootstrap(one, mean_score, n_resamples=50)["mean"]
    assert interval.estimate == 1.5 and math.isnan(interval.low) and not interval.defined
    assert not interval.contains(1.5)
    two = {"sum": np.array([3.0, 1.0]), "count": np.array([2.0, 1.0])}
    with pytest.raises(ValueError, match="same events for both forecasts, got 2 and 1"):
        paired_event_bootstrap(two, one, mean_score)
    with pytest.raises(ValueError, match="share their first"):
        event_bootstrap({"sum": np.zeros(3), "count": np.zeros(2)}, mean_score)
    assert np.array_equal(resample_counts(5, n_resamples=3, seed=7), resample_counts(5, n_resamples=3, seed=7))
