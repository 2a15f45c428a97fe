"""The report's figures: scores versus lead time per source, rank histograms, reliability diagrams, GIF panels.

Curves read the flat score keys of ``docs/metrics.md``; panels are in physical units with the radar colour
map of :func:`nowcast_pl.viz.radar_colormap` and a colour bar.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from nowcast_pl.metrics import curve_points, threshold_label
from nowcast_pl.report.tables import lead_key, score_key
from nowcast_pl.viz import plt, radar_colormap, rank_histogram_figure, reliability_figure


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


def panel_gif(path: Path, *, truth: np.ndarray, forecast: np.ndarray, title: str, units: str,
              value_range: tuple[float, float], time_step_minutes: float, frame_ms: int = 500) -> None:
    """Animated GIF over lead times: truth, the shown members, and the ensemble mean side by side.

    Args:
        path: ``*.gif`` to write.
        truth: (T_out, H, W) observed frames, physical units.
        forecast: (K + 1, T_out, H, W) K members then their ensemble mean (one deterministic forecast: K = 1).
        title: figure title (source and init time).
        units: physical units (colour map and colour bar label).
        value_range: (lo, hi) of the colour scale; values below lo + 5 % of the range are background.
        time_step_minutes: minutes between lead times.
        frame_ms: duration of one frame.
    """
    lo, hi = value_range
    vmin = lo + 0.05 * (hi - lo)
    cmap, norm = radar_colormap(units, hi)
    scale = dict(cmap=cmap, norm=norm) if norm is not None else dict(cmap=cmap, vmin=vmin, vmax=hi)
    members = forecast.shape[0] - 1
    labels = ["observed"] + ([f"member {i + 1}" for i in range(members)] + ["ensemble mean"] if members > 1
                             else ["forecast"])
    fields = [truth] + list(forecast if members > 1 else forecast[:1])
    frames = []
    for lead in range(truth.shape[0]):
        fig, axes = plt.subplots(1, len(fields), figsize=(2.3 * len(fields) + 0.8, 3.0), squeeze=False)
        fig.subplots_adjust(left=0.02, right=0.86, top=0.8, bottom=0.03, wspace=0.08)
        for ax, label, field in zip(axes[0], labels, fields, strict=True):
            image = ax.imshow(np.where(field[lead] >= vmin, field[lead], np.nan), **scale)
            ax.set(title=label, xticks=[], yticks=[])
        fig.colorbar(image, cax=fig.add_axes((0.89, 0.08, 0.015, 0.68)), label=units)
        fig.suptitle(f"{title}  +{(lead + 1) * time_step_minutes:.0f} min", fontsize=9, y=0.97)
        frames.append(_to_image(fig))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0, optimize=True)


def _to_image(fig: Figure) -> Image.Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB").quantize(colors=256)


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
