"""Bootstrap intervals of the report's scores: per-event sums of metric states, resampled over events.

The table's scores (CSI and HSS per threshold, FSS per threshold and scale, CRPS, MAE and, for ensembles, the
spread-skill ratio; each over all lead times and per lead time) are functions of sum states of the protocol's
metrics. :class:`EventStatistics` records what the windows of each event add to those states while a source's
collection is updated; :func:`table_score_function` recomputes the scores from summed states with the metrics' own
formulas; :class:`ScoreIntervals` resamples whole events (:mod:`nowcast_pl.metrics.bootstrap`) with one set of draws
for every source, so the interval of a difference between two sources is paired."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nowcast_pl.metrics import EvaluationMetrics, lead_key, score_key
from nowcast_pl.metrics.bootstrap import (
    MIN_EVENTS,
    Interval,
    ScoreFunction,
    percentile_interval,
    replicate_scores,
    resample_counts,
    totals,
)
from nowcast_pl.metrics.categorical import aggregated_scores
from nowcast_pl.metrics.ensemble import crps_from_sums, spread_skill_from_sums
from nowcast_pl.metrics.spatial import fss_from_sums

INTERVAL_STATES = {
    "categorical": ("hits", "misses", "false_alarms", "correct_negatives"),
    "error": ("absolute_error_sum", "pixel_count"),
    "fss": ("forecast_square_sum", "product_sum", "observed_square_sum"),
    "crps": ("absolute_error_sum", "pairwise_distance_sum", "pixel_count"),
    "spread_skill": ("variance_sum", "squared_error_sum", "pixel_count"),
}
"""Collection member → the sum states the table's scores are computed from."""
CATEGORICAL = ("csi", "hss")


@dataclass(frozen=True)
class BootstrapSettings:
    """How the report's intervals are drawn.

    Attributes:
        resamples: bootstrap resamples of the events.
        seed: seed of the draws (recorded in ``intervals.json``).
        confidence: coverage of the percentile intervals, e.g. 0.95.
    """

    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.resamples < 1:
            raise ValueError(f"nowcast report: --resamples must be >= 1, got {self.resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"nowcast report: --confidence must be in (0, 1), e.g. 0.95, got {self.confidence}")


class EventStatistics:
    """What the windows of each event add to the sum states of a source's metrics (:data:`INTERVAL_STATES`).

    Args:
        metrics: the source's collection from :func:`nowcast_pl.metrics.build_metrics`; update it through
            :meth:`update` so every window is counted once in it and once in its event's sums.
    """

    def __init__(self, metrics: EvaluationMetrics) -> None:
        self.metrics = metrics
        self.members = [name for name in INTERVAL_STATES if name in metrics]
        self.sums: dict[int, dict[str, np.ndarray]] = {}

    def update(self, event: int, forecast: Tensor, truth: Tensor, mask: Tensor | None) -> None:
        """Update the collection with windows of one event (shapes as ``EvaluationMetrics.update``)."""
        before = self._states()
        self.metrics.update(forecast, truth, mask)
        event_sums = self.sums.setdefault(int(event), {})
        for key, value in self._states().items():
            event_sums[key] = event_sums.get(key, 0) + (value - before[key])

    def per_event(self, events: Sequence[int]) -> dict[str, np.ndarray]:
        """State name (``"categorical.hits"``, ...) → (E, ...) sums of ``events``, in that order.

        Raises:
            ValueError: if an event has no window scored for this source.
        """
        missing = sorted(set(events) - set(self.sums))
        if missing:
            raise ValueError(f"events {missing} have no window scored for this source")
        keys = self.sums[events[0]].keys()
        return {key: np.stack([self.sums[event][key] for event in events]) for key in keys}

    def _states(self) -> dict[str, np.ndarray]:
        return {f"{name}.{state}": self.metrics[name].metric_state[state].detach().cpu().numpy().copy()
                for name in self.members for state in INTERVAL_STATES[name]}


def table_score_function(metrics: EvaluationMetrics) -> ScoreFunction:
    """Summed states (R, ...) → the table's scores (R,), keyed as the metrics' ``compute()`` keys them.

    Keys: ``csi@{thr}``, ``hss@{thr}``, ``fss@{thr}/s{scale}``, ``mae``, ``crps`` and, for an ensemble,
    ``spread_skill`` (pooled over lead times as :class:`~nowcast_pl.metrics.ensemble.SpreadSkillRatio` pools
    it), each also ``/lead_{t:02d}``; a one-member source has no CRPS states and gets ``crps = mae``, as in the
    report's scores.
    """
    categorical = metrics["categorical"]
    fss = metrics["fss"] if "fss" in metrics else None
    spread = metrics["spread_skill"] if "spread_skill" in metrics else None
    unit, thresholds = categorical.unit, categorical.thresholds

    def scores(states: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        state = {key: torch.from_numpy(np.asarray(value, dtype=np.float64)) for key, value in states.items()}
        counts = [state[f"categorical.{name}"] for name in INTERVAL_STATES["categorical"]]
        per_lead, aggregated = aggregated_scores(counts, categorical.aggregation)
        result: dict[str, Tensor] = {}
        for score in CATEGORICAL:
            for index, threshold in enumerate(thresholds):
                result |= _by_lead(lambda lead, s=score, t=threshold: score_key(s, t, unit, lead=lead),
                                   per_lead[score][:, index], aggregated[score][:, index])
        if fss is not None:
            fss_lead, fss_all = fss_from_sums(*(state[f"fss.{name}"] for name in INTERVAL_STATES["fss"]))
            for index, threshold in enumerate(fss.thresholds):
                for position, scale in enumerate(fss.scales):
                    result |= _by_lead(lambda lead, t=threshold, s=scale: score_key("fss", t, unit, lead=lead,
                                                                                     fss_scale=s),
                                       fss_lead[:, index, position], fss_all[:, index, position])
        mae = state["error.absolute_error_sum"] / state["error.pixel_count"]
        result |= _by_lead(lambda lead: lead_key("mae", lead), mae, mae.mean(dim=-1))
        if "crps.pixel_count" in state:
            crps = crps_from_sums(*(state[f"crps.{name}"] for name in INTERVAL_STATES["crps"]))
        else:
            crps = mae
        result |= _by_lead(lambda lead: lead_key("crps", lead), crps, crps.mean(dim=-1))
        if spread is not None:
            sums = [state[f"spread_skill.{name}"] for name in INTERVAL_STATES["spread_skill"]]
            ratio = spread_skill_from_sums(*sums, members=spread.members)
            pooled = spread_skill_from_sums(*(value.sum(dim=-1) for value in sums), members=spread.members)
            result |= _by_lead(lambda lead: lead_key("spread_skill", lead), ratio, pooled)
        return {key: value.numpy() for key, value in result.items()}

    return scores


def _by_lead(key_of, per_lead: Tensor, aggregated: Tensor) -> dict[str, Tensor]:
    """``key_of(None)`` → aggregated (R,), ``key_of(t)`` → per_lead[:, t - 1] (R,)."""
    return {key_of(None): aggregated} | {key_of(t): per_lead[:, t - 1] for t in range(1, per_lead.shape[-1] + 1)}


class ScoreIntervals:
    """Every source's table scores and their bootstrap replicates, all sources on the same drawn events.

    Args:
        statistics: source name → its :class:`EventStatistics` (every source scored on the same windows).
        events: store indices of the scored events.
        event_names: their names.
        settings: resamples, seed and confidence.
    """

    def __init__(self, statistics: dict[str, EventStatistics], events: Sequence[int], event_names: Sequence[str],
                 settings: BootstrapSettings) -> None:
        self.settings, self.event_names = settings, list(event_names)
        self.n_events = len(events)
        counts = resample_counts(self.n_events, n_resamples=settings.resamples, seed=settings.seed)
        self.estimates: dict[str, dict[str, float]] = {}
        self.replicates: dict[str, dict[str, np.ndarray]] = {}
        for source, stats in statistics.items():
            per_event, score_fn = stats.per_event(list(events)), table_score_function(stats.metrics)
            self.estimates[source] = {key: float(value[0]) for key, value in score_fn(totals(per_event)).items()}
            self.replicates[source] = replicate_scores(per_event, score_fn, counts)

    @property
    def defined(self) -> bool:
        """False when there are too few events for an interval (every interval is then NaN)."""
        return self.n_events >= MIN_EVENTS

    def interval(self, source: str, key: str) -> Interval:
        """The score ``key`` of ``source`` with its interval (NaN for a key without interval)."""
        if key not in self.replicates[source]:
            return Interval(math.nan, math.nan, math.nan)
        bounds = percentile_interval(self.replicates[source][key], self.settings.confidence, self.n_events)
        return Interval(self.estimates[source][key], *bounds)

    def difference(self, candidate: str, other: str, key: str) -> Interval:
        """``candidate − other`` on ``key`` with its paired interval (same drawn events for both)."""
        if key not in self.replicates[candidate] or key not in self.replicates[other]:
            return Interval(math.nan, math.nan, math.nan)
        replicates = self.replicates[candidate][key] - self.replicates[other][key]
        bounds = percentile_interval(replicates, self.settings.confidence, self.n_events)
        return Interval(self.estimates[candidate][key] - self.estimates[other][key], *bounds)

    def describe(self, split: str) -> str:
        """One line: how the intervals were drawn, or why there are none."""
        if not self.defined:
            return (f"no intervals: the {split} split has {self.n_events} event (a bootstrap over events needs "
                    f"at least {MIN_EVENTS}); add events to the split")
        s = self.settings
        return (f"{s.confidence:.0%} percentile bootstrap intervals over {self.n_events} {split} events "
                f"({s.resamples} resamples of whole events, seed {s.seed})")

    def to_json(self, candidate: str) -> dict[str, object]:
        """The settings, events, every source's intervals and the candidate's paired differences (null = NaN)."""
        sources = {source: {key: _bounds(self.interval(source, key)) for key in sorted(keys)}
                   for source, keys in self.replicates.items()}
        differences = {}
        for other in self.replicates:
            if other != candidate:
                keys = sorted(self.replicates[candidate].keys() & self.replicates[other].keys())
                differences[f"{candidate} - {other}"] = {
                    key: [_finite(interval.estimate), *_bounds(interval)]
                    for key, interval in ((key, self.difference(candidate, other, key)) for key in keys)}
        s = self.settings
        return {"method": "percentile bootstrap over events (whole events resampled with replacement)",
                "confidence": s.confidence, "resamples": s.resamples, "seed": s.seed, "events": self.event_names,
                "intervals": sources, "differences": differences}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _bounds(interval: Interval) -> list[float | None]:
    return [_finite(interval.low), _finite(interval.high)]
