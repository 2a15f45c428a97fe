"""Confidence intervals of scores from a bootstrap over independent events (Efron & Tibshirani 1993, ch. 6, 13).

Windows of one radar event overlap in time and share its weather, so they are not independent samples: the
bootstrap resamples whole *events* with replacement, never windows. Every score here is a function of sums
over windows (contingency counts for CSI/HSS, error and pixel-count sums for MAE/CRPS, fraction sums for
FSS), so each event is summarised by its *sufficient statistics*, the sums over its windows, and a resample's
score is the score of the summed statistics of the drawn events (a ratio of sums, not a mean of per-event
scores). A paired interval of a contrast (difference by default) between two forecasts uses the same drawn
events for both.

Intervals are percentile intervals (Efron & Tibshirani 1993, eq. 13.5): the (1 − c)/2 and (1 + c)/2
quantiles of the resampled scores, linearly interpolated (``numpy.quantile``'s default). Resamples in which
a score is undefined (0/0, e.g. no observed event among the drawn events) are left out of its quantiles.
With fewer than 2 events nothing varies between resamples and the interval is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

Statistics = Mapping[str, np.ndarray]
"""Sufficient statistics: name → array (E, ...) per event, or (R, ...) per resample once summed."""
ScoreFunction = Callable[[Statistics], Mapping[str, np.ndarray]]
"""Summed statistics with a leading resample axis (R, ...) → scores, each (R,)."""
MIN_EVENTS = 2


@dataclass(frozen=True)
class Interval:
    """A score (or a contrast of two) and its bootstrap interval.

    Attributes:
        estimate: the value on all events.
        low, high: interval bounds (NaN when undefined: fewer than 2 events, or the score undefined in every
            resample).
    """

    estimate: float
    low: float
    high: float

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def contains(self, value: float) -> bool:
        """True if ``low <= value <= high`` (False for an undefined interval)."""
        return self.defined and self.low <= value <= self.high


def resample_counts(n_events: int, *, n_resamples: int, seed: int) -> np.ndarray:
    """How often each event is drawn in each resample of ``n_events`` events with replacement.

    Returns:
        (n_resamples, n_events) int64, each row sums to ``n_events``; the same for the same arguments.
    """
    if n_events < 1 or n_resamples < 1:
        raise ValueError(f"a bootstrap needs n_events >= 1 and n_resamples >= 1, got {n_events} and {n_resamples}")
    generator = np.random.default_rng(seed)
    return generator.multinomial(n_events, np.full(n_events, 1.0 / n_events), size=n_resamples)


def event_count(stats_per_event: Statistics) -> int:
    """E, the shared leading length of every array of ``stats_per_event``.

    Raises:
        ValueError: if there is no statistic or the arrays disagree on E.
    """
    lengths = {name: np.shape(values)[0] for name, values in stats_per_event.items()}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"event statistics must share their first (event) axis, got lengths {lengths}")
    return next(iter(lengths.values()))


def replicate_scores(stats_per_event: Statistics, score_fn: ScoreFunction, counts: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """Scores of every resample: ``score_fn`` of the statistics summed with the draw ``counts``.

    Args:
        stats_per_event: name → (E, ...) per-event sums.
        score_fn: (R, ...) summed statistics → scores, each (R,).
        counts: (R, E) draws from :func:`resample_counts`.

    Returns:
        score name → (R,) float64.
    """
    summed = {name: np.tensordot(counts.astype(np.float64), np.asarray(values, dtype=np.float64), axes=1)
              for name, values in stats_per_event.items()}
    return {key: np.asarray(values, dtype=np.float64) for key, values in score_fn(summed).items()}


def totals(stats_per_event: Statistics) -> dict[str, np.ndarray]:
    """The statistics of all events, as one resample: name → (1, ...)."""
    return {name: np.asarray(values, dtype=np.float64).sum(axis=0, keepdims=True)
            for name, values in stats_per_event.items()}


def percentile_interval(replicates: np.ndarray, confidence: float, n_events: int) -> tuple[float, float]:
    """(low, high) quantiles of the finite ``replicates``; NaN for fewer than 2 events or no finite replicate."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    finite = replicates[np.isfinite(replicates)]
    if n_events < MIN_EVENTS or finite.size == 0:
        return math.nan, math.nan
    low, high = np.quantile(finite, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def event_bootstrap(stats_per_event: Statistics, score_fn: ScoreFunction, *, n_resamples: int = 1000,
                    seed: int = 0, confidence: float = 0.95) -> dict[str, Interval]:
    """Each score of ``score_fn`` with its percentile interval from resampling events.

    Args:
        stats_per_event: name → (E, ...) sums over the windows of each event (the same event order in all).
        score_fn: (R, ...) summed statistics → score name → (R,) values.
        n_resamples: R, bootstrap resamples.
        seed: seed of the draws (same seed and E → same resampled events).
        confidence: coverage of the interval, e.g. 0.95.

    Returns:
        score name → :class:`Interval` (NaN bounds for fewer than 2 events).
    """
    n_events = event_count(stats_per_event)
    counts = resample_counts(n_events, n_resamples=n_resamples, seed=seed)
    estimates = score_fn(totals(stats_per_event))
    replicates = replicate_scores(stats_per_event, score_fn, counts)
    return {key: Interval(float(np.asarray(estimates[key])[0]),
                          *percentile_interval(values, confidence, n_events)) for key, values in replicates.items()}


def paired_event_bootstrap(candidate: Statistics, baseline: Statistics, score_fn: ScoreFunction, *,
                           contrast: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.subtract,
                           n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
                           ) -> dict[str, Interval]:
    """``contrast(candidate score, baseline score)`` with its interval, both scored on the same drawn events.

    Args:
        candidate, baseline: name → (E, ...) per-event sums of two forecasts of the same E events, in one order.
        score_fn: as in :func:`event_bootstrap`.
        contrast: elementwise function of the two scores, e.g. ``np.subtract`` (default) or ``np.divide``.
        n_resamples, seed, confidence: as in :func:`event_bootstrap`.

    Returns:
        score name → :class:`Interval` of the contrast (keys that both forecasts score).

    Raises:
        ValueError: if the two forecasts cover different numbers of events.
    """
    n_events, other = event_count(candidate), event_count(baseline)
    if n_events != other:
        raise ValueError(f"a paired bootstrap needs the same events for both forecasts, got {n_events} and {other}")
    counts = resample_counts(n_events, n_resamples=n_resamples, seed=seed)
    mine, theirs = score_fn(totals(candidate)), score_fn(totals(baseline))
    mine_replicates = replicate_scores(candidate, score_fn, counts)
    their_replicates = replicate_scores(baseline, score_fn, counts)
    intervals = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for key in sorted(mine_replicates.keys() & their_replicates.keys()):
            estimate = contrast(np.asarray(mine[key], dtype=np.float64), np.asarray(theirs[key], dtype=np.float64))
            replicates = contrast(mine_replicates[key], their_replicates[key])
            intervals[key] = Interval(float(estimate[0]), *percentile_interval(replicates, confidence, n_events))
    return intervals
