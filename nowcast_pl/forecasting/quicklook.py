"""The quick-look GIF of ``nowcast forecast``: one frame per lead time with the last observation, the first
member, the ensemble mean and the exceedance probability of the lowest threshold.

Fields use the radar colour map of :func:`nowcast_pl.viz.radar_colormap`; values below 5 % of the model's
value range are background, as in the report's panels. Fields are shown at most :data:`SHOWN_PIXELS` pixels
wide or high (every n-th pixel): the panels are a few hundred pixels wide anyway.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image

from nowcast_pl.viz import plt, radar_colormap

SHOWN_PIXELS = 400


def write_quicklook(path: str | Path, dataset: xr.Dataset, observed_last: np.ndarray, *,
                    value_range: tuple[float, float], frame_ms: int = 500) -> Path:
    """Write the GIF atomically (``<path>.partial``, then renamed).

    Args:
        path: ``*.gif`` to write (replaced if it exists).
        dataset: the forecast dataset (:func:`nowcast_pl.forecasting.forecast_file.forecast_dataset`).
        observed_last: (H, W) last observed frame, physical units.
        value_range: (lo, hi) of the colour scale.
        frame_ms: duration of one frame.
    """
    path = Path(path)
    name = next(n for n, v in dataset.data_vars.items() if v.dims[0] == "member")
    units = dataset[name].attrs["units"]
    lo, hi = value_range
    vmin = lo + 0.05 * (hi - lo)
    cmap, norm = radar_colormap(units, hi)
    scale = dict(cmap=cmap, norm=norm) if norm is not None else dict(cmap=cmap, vmin=vmin, vmax=hi)
    init = np.datetime_as_string(dataset["forecast_reference_time"].values, unit="m").replace("T", " ")
    has_probability = dataset.sizes.get("threshold", 0) > 0
    stride = -(-max(observed_last.shape) // SHOWN_PIXELS)
    shown = (slice(None, None, stride), slice(None, None, stride))
    frames = []
    for lead in range(dataset.sizes["lead_time"]):
        fields = [("observed", observed_last), ("member 0", dataset[name].values[0, lead]),
                  ("ensemble mean", dataset["ensemble_mean"].values[lead])]
        fig, axes = plt.subplots(1, len(fields) + has_probability, figsize=(2.4 * (len(fields) + 1) + 1, 3.0),
                                 squeeze=False)
        for ax, (label, field) in zip(axes[0], fields, strict=False):
            image = ax.imshow(np.where(field >= vmin, field, np.nan)[shown], **scale)
            ax.set(title=label, xticks=[], yticks=[])
        fig.colorbar(image, ax=axes[0, :len(fields)], shrink=0.8, label=units)
        if has_probability:
            threshold = float(dataset["threshold"].values[0])
            probability = dataset["exceedance_probability"].values[0, lead][shown]
            image = axes[0, -1].imshow(probability, cmap="Blues", vmin=0.0, vmax=1.0)
            axes[0, -1].set(title=f"P(≥ {threshold:g} {units})", xticks=[], yticks=[])
            fig.colorbar(image, ax=axes[0, -1], shrink=0.8)
        minutes = dataset["lead_time"].values[lead] / np.timedelta64(1, "m")
        fig.subplots_adjust(top=0.78)
        fig.suptitle(f"forecast from {init} UTC  +{minutes:g} min", fontsize=9, y=0.97)
        frames.append(_to_image(fig))
    partial = path.with_name(path.name + ".partial")
    frames[0].save(partial, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    os.replace(partial, path)
    return path


def _to_image(fig) -> Image.Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB").quantize(colors=256)
