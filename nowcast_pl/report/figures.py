"""The report's GIF panels. Its score figures (versus lead time, rank histograms, reliability diagrams) are
:func:`nowcast_pl.viz.lead_time_figure` and :func:`nowcast_pl.viz.ensemble_figures`, shared with the task's
TensorBoard logging.

Panels are in physical units with the radar colour
map of :func:`nowcast_pl.viz.radar_colormap` and a colour bar.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from nowcast_pl.viz import plt, radar_colormap


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
