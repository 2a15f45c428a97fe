"""Radar figures: an image panel (inputs | truth | forecast), score-versus-lead-time curves, rank histograms and
reliability diagrams; used by the task's TensorBoard logging and by the report (:mod:`nowcast_pl.report`).

Score figures read the flat score keys of ``docs/metrics.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nowcast_pl.data.units import same_units  # noqa: E402
from nowcast_pl.metrics import curve_points, lead_key, score_key, threshold_label  # noqa: E402

# A conventional reflectivity palette (NWS-like), one colour per 5 dBZ from 5 to 75 dBZ.
_DBZ_COLOURS = [
    "#04e9e7", "#019ff4", "#0300f4", "#02fd02", "#01c501", "#008e00", "#fdf802",
    "#e5bc00", "#fd9500", "#fd0000", "#d40000", "#bc0000", "#f800fd", "#9854c6",
]
_DBZ_LEVELS = np.arange(5.0, 80.0, 5.0)


def radar_colormap(units: str, vmax: float) -> tuple[ListedColormap, BoundaryNorm | None]:
    """Colour map (and norm) for a field: the reflectivity palette in dBZ, ``turbo`` otherwise.

    Values below the first level are transparent white, so no-rain areas read as background.
    """
    if same_units(units, "dBZ"):
        cmap = ListedColormap(_DBZ_COLOURS).with_extremes(under="white")
        return cmap, BoundaryNorm(_DBZ_LEVELS, cmap.N)
    return plt.get_cmap("turbo").with_extremes(under="white"), None


def forecast_panel(
    inputs: np.ndarray,
    targets: np.ndarray,
    forecast: np.ndarray,
    *,
    leads: Sequence[int],
    units: str,
    time_step_minutes: float,
    vmin: float,
    vmax: float,
) -> Figure:
    """Figure with the last input frames, then truth and forecast at the chosen lead times.

    Args:
        inputs: (T_in, H, W) observed frames in physical units.
        targets: (T_out, H, W) observed future frames in physical units.
        forecast: (T_out, H, W) forecast in physical units.
        leads: 1-based lead indices to show (clipped to T_out).
        units: physical units, used for the colour map and the colour bar.
        time_step_minutes: minutes between frames, for the titles.
        vmin: smallest value shown in colour (below is background).
        vmax: largest value of the colour scale.
    """
    leads = sorted({min(max(1, lead), targets.shape[0]) for lead in leads})
    n_cols = max(len(leads), min(3, inputs.shape[0]))
    fig, axes = plt.subplots(3, n_cols, figsize=(2.2 * n_cols, 6.6), squeeze=False)
    cmap, norm = radar_colormap(units, vmax)
    kwargs = dict(cmap=cmap, norm=norm) if norm is not None else dict(cmap=cmap, vmin=vmin, vmax=vmax)
    shown_inputs = inputs[-n_cols:]
    rows = [
        ("input", [(f"t{(i - len(shown_inputs) + 1) * time_step_minutes:+.0f} min", f) for i, f in
                   enumerate(shown_inputs)]),
        ("truth", [(f"+{lead * time_step_minutes:.0f} min", targets[lead - 1]) for lead in leads]),
        ("forecast", [(f"+{lead * time_step_minutes:.0f} min", forecast[lead - 1]) for lead in leads]),
    ]
    image = None
    for row, (label, frames) in enumerate(rows):
        for col in range(n_cols):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(frames):
                ax.axis("off")
                continue
            title, frame = frames[col]
            image = ax.imshow(np.where(frame >= vmin, frame, np.nan), **kwargs)
            ax.set_title(title, fontsize=8)
            if col == 0:
                ax.set_ylabel(label)
    fig.colorbar(image, ax=axes, shrink=0.8, label=units)
    return fig


def lead_time_curves(scores: dict[str, np.ndarray], *, time_step_minutes: float, ylabel: str) -> Figure:
    """Line plot of one score against lead time, one line per threshold.

    Args:
        scores: label (e.g. ``"20dBZ"``) → (T_out,) score per lead time.
        time_step_minutes: minutes between lead times.
        ylabel: score name.
    """
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, values in scores.items():
        leads = np.arange(1, len(values) + 1) * time_step_minutes
        ax.plot(leads, values, marker="o", markersize=3, label=label)
    ax.set_xlabel("lead time (min)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def rank_histogram_figure(histograms: dict[str, tuple[list[float], list[float]]]) -> Figure:
    """Bar chart of rank histograms, one panel per forecast; a flat histogram is a calibrated ensemble.

    Args:
        histograms: label → (ranks 0..N, relative frequencies), e.g. from
            ``curve_points(scores, "rank_hist")``.
    """
    fig, axes = plt.subplots(1, len(histograms), figsize=(3.2 * len(histograms), 3), squeeze=False)
    for ax, (label, (ranks, freqs)) in zip(axes[0], histograms.items(), strict=True):
        ax.bar(ranks, freqs, width=0.8, color="#4477aa")
        if ranks:
            ax.axhline(1.0 / len(ranks), color="k", lw=0.8, ls="--")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("rank of the observation")
    axes[0, 0].set_ylabel("relative frequency")
    fig.tight_layout()
    return fig


def reliability_figure(curves: dict[str, dict[str, tuple[list[float], list[float]]]]) -> Figure:
    """Reliability diagrams, one panel per threshold, one line per forecast, with the diagonal.

    Args:
        curves: threshold label (e.g. ``"20dBZ"``) → forecast label → (mean forecast probability per bin,
            observed frequency per bin), e.g. from ``curve_points`` of ``rel_forecast@…`` and ``rel_observed@…``.
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 3.2), squeeze=False)
    for ax, (threshold, lines) in zip(axes[0], curves.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--")
        for label, (forecast, observed) in lines.items():
            ax.plot(forecast, observed, marker="o", markersize=3, label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="forecast probability", title=f"P(X ≥ {threshold})")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("observed frequency")
    fig.tight_layout()
    return fig


def lead_time_figure(scores: dict[str, dict[str, float]], score: str, *, thresholds: Sequence[float], unit: str,
                     out_frames: int, time_step_minutes: float, fss_scale: int = 4) -> Figure:
    """``score`` (csi, hss, fss or crps) against lead time, one line per source and one panel per threshold
    (a single panel for crps)."""
    panels = [None] if score == "crps" else list(thresholds)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    leads = np.arange(1, out_frames + 1) * time_step_minutes
    for ax, threshold in zip(axes[0], panels, strict=True):
        for source, values in scores.items():
            keys = [lead_key(score, t) if threshold is None else
                    score_key(score, threshold, unit, lead=t, fss_scale=fss_scale) for t in range(1, out_frames + 1)]
            ax.plot(leads, [values.get(k, math.nan) for k in keys], marker="o", markersize=3, label=source)
        what = f"CRPS ({unit})" if threshold is None else f"{score.upper()} ≥ {threshold_label(threshold)} {unit}"
        ax.set(title=what + (f", {fss_scale} px" if score == "fss" else ""), xlabel="lead time (min)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def ensemble_figures(scores: dict[str, dict[str, float]], *, thresholds: Sequence[float], unit: str
                     ) -> dict[str, Figure]:
    """Rank histograms and reliability diagrams of the sources that have them (ensembles of N > 1)."""
    histograms = {name: curve_points(values, "rank_hist") for name, values in scores.items()}
    histograms = {name: points for name, points in histograms.items() if points[0]}
    figures = {}
    if histograms:
        figures["rank_histogram"] = rank_histogram_figure(histograms)
    curves = {}
    for threshold in thresholds:
        label = f"{threshold_label(threshold)}{unit}"
        lines = {name: (curve_points(values, f"rel_forecast@{label}")[1],
                        curve_points(values, f"rel_observed@{label}")[1]) for name, values in scores.items()}
        lines = {name: line for name, line in lines.items() if line[0]}
        if lines:
            curves[label] = lines
    if curves:
        figures["reliability"] = reliability_figure(curves)
    return figures


def run_figures(scores: dict[str, float], *, thresholds: Sequence[float], unit: str, out_frames: int,
                time_step_minutes: float, fss_scale: int = 4) -> dict[str, Figure]:
    """The report's figures for one model's scores (logged to TensorBoard by the task): FSS and CRPS versus
    lead time, rank histogram and reliability diagram, each only when its keys are in ``scores``."""
    named = {"model": scores}
    layout = dict(thresholds=thresholds, unit=unit, out_frames=out_frames, time_step_minutes=time_step_minutes,
                  fss_scale=fss_scale)
    figures = ensemble_figures(named, thresholds=thresholds, unit=unit)
    if "crps/lead_01" in scores:
        figures["crps_by_lead"] = lead_time_figure(named, "crps", **layout)
    if thresholds and score_key("fss", thresholds[0], unit, lead=1, fss_scale=fss_scale) in scores:
        figures["fss_by_lead"] = lead_time_figure(named, "fss", **layout)
    return figures
