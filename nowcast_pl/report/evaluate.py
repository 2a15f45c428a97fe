"""Scoring every source on the same windows with one metric protocol.

Every source's ensemble is scored by :func:`nowcast_pl.metrics.build_metrics` with ``members=N`` in the store's
physical units: categorical scores, FSS and errors pool the members (as STLDM pools its ensemble); CRPS, rank
histogram and reliability need N > 1. A deterministic forecast's CRPS equals its mean absolute error, so
one-member sources report ``crps = mae`` (per lead time too) and stay comparable on CRPS.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nowcast_pl.metrics import EvaluationMetrics, build_metrics, flatten_scores, resolve_protocol
from nowcast_pl.report.intervals import EventStatistics
from nowcast_pl.report.sources import EvaluationSettings, ModelSource, StoreSource

Source = ModelSource | StoreSource
PANEL_MEMBERS = 3
"""Members shown in a source's GIF panel (next to the ensemble mean)."""


@dataclass
class PanelWindow:
    """One window kept for the GIF panels, physical units.

    Attributes:
        inputs: (T_in, H, W) observed frames.
        truth: (T_out, H, W) observed future frames.
        forecasts: source name → (N, T_out, H, W) members (at most :data:`PANEL_MEMBERS`) and their mean as
            the last entry, i.e. (min(N, PANEL_MEMBERS) + 1, T_out, H, W).
        init_time: UTC epoch seconds of the last observed frame.
    """

    inputs: np.ndarray
    truth: np.ndarray
    init_time: int
    forecasts: dict[str, np.ndarray] = field(default_factory=dict)


def metrics_for(settings: EvaluationSettings, members: int, datamodule: Any, fss_scales: tuple[int, ...]
                ) -> EvaluationMetrics:
    """The protocol's metrics for ``members`` forecasts per window, with a deterministic FSS at ``fss_scales``."""
    protocol = resolve_protocol(settings.protocol)
    if not protocol.fss_scales:
        protocol = dataclasses.replace(protocol, fss_scales=tuple(fss_scales))
    lo, hi = datamodule.value_range
    return build_metrics(protocol, thresholds=list(settings.thresholds), lead_times=datamodule.out_frames,
                         unit=datamodule.units, data_range=hi - lo, members=members)


@dataclass
class Evaluation:
    """What :func:`evaluate_sources` measured.

    Attributes:
        scores: source → flat scores (keys as in ``docs/metrics.md``).
        panel: the window kept for the GIF panels.
        statistics: source → what each event's windows added to its metrics' sum states (for intervals).
        events: store indices of the scored events, in store order.
        event_names: their names.
        seconds_per_forecast: source → wall-clock seconds of its ``forecast`` calls per window and member.
    """

    scores: dict[str, dict[str, float]]
    panel: PanelWindow
    statistics: dict[str, EventStatistics]
    events: list[int]
    event_names: list[str]
    seconds_per_forecast: dict[str, float]


def evaluate_sources(sources: list[Source], datamodule: Any, settings: EvaluationSettings, *, split: str = "test",
                     max_batches: int | None = None, panel_window: int = 0,
                     fss_scales: tuple[int, ...] = (1, 4, 16)) -> Evaluation:
    """Scores of every source on the windows of ``split``, per-event statistics, and the panel window's forecasts.

    Args:
        sources: from :func:`nowcast_pl.report.sources.load_source`.
        datamodule: the report's :class:`nowcast_pl.data.RadarDataModule` (set up here).
        settings: protocol, thresholds and members.
        split: data split to score.
        max_batches: score only the first batches (None: all).
        panel_window: index (in the split) of the window kept for the GIF panels.
        fss_scales: neighbourhood sides (pixels) of the FSS when the protocol has none.

    Returns:
        An :class:`Evaluation`; every window's scores go to the event it belongs to, so intervals can resample
        whole events.
    """
    datamodule.setup({"test": "test", "val": "validate", "predict": "predict"}[split])
    loader = getattr(datamodule, f"{split}_dataloader")()
    window_events = datamodule.window_events(split)
    statistics = {s.name: EventStatistics(metrics_for(settings, s.members, datamodule, fss_scales)) for s in sources}
    panel = None
    seconds, forecasts = dict.fromkeys(statistics, 0.0), dict.fromkeys(statistics, 0)
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        truth = datamodule.to_physical(batch["targets"].float())
        mask = batch["target_mask"]
        rows = (batch["window"] == panel_window).nonzero().flatten().tolist()
        if rows:
            row = rows[0]
            panel = PanelWindow(inputs=datamodule.to_physical(batch["inputs"][row, :, 0].numpy()),
                                truth=truth[row, :, 0].numpy(), init_time=int(batch["init_time"][row]))
        events = window_events[batch["window"].numpy()]
        for source in sources:
            start = time.perf_counter()
            forecast = source.forecast(batch)
            seconds[source.name] += time.perf_counter() - start
            forecasts[source.name] += forecast.shape[0] * forecast.shape[1]
            for event in np.unique(events):
                chosen = torch.from_numpy(events == event)
                statistics[source.name].update(event, forecast[chosen], truth[chosen], mask[chosen])
            if rows:
                shown = forecast[row, :PANEL_MEMBERS, :, 0]
                panel.forecasts[source.name] = torch.cat([shown, forecast[row, :, :, 0].mean(0, keepdim=True)]).numpy()
    if panel is None:
        raise ValueError(f"the report's panel_window {panel_window} is not among the scored windows of '{split}'")
    scores = {name: _scores(stats.metrics) for name, stats in statistics.items()}
    events = sorted(next(iter(statistics.values())).sums)
    names = [str(name) for name in datamodule.store.event_names[events]]
    return Evaluation(scores=scores, panel=panel, statistics=statistics, events=events, event_names=names,
                      seconds_per_forecast={name: seconds[name] / forecasts[name] for name in statistics})


def _scores(collection: EvaluationMetrics) -> dict[str, float]:
    scores = {key: float(value) for key, value in flatten_scores(collection.compute()).items()}
    if "crps" not in scores:
        scores |= {key.replace("mae", "crps", 1): value for key, value in scores.items()
                   if key == "mae" or key.startswith("mae/lead_")}
    return scores
