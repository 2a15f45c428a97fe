"""Observed frames for a forecast from a radar store (``nowcast-prep``'s output) at a chosen time.

The ``in_frames`` frames ending at ``time`` must be consecutive frames of one event, all present
(``frame_valid``), in a store whose time step is the model's; pixels the store masks become NaN. Units are
checked and converted as for raw files (:func:`nowcast_pl.forecasting.inputs.convert_units`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from nowcast_pl.data.georef import model_grid
from nowcast_pl.data.store import RadarStore
from nowcast_pl.forecasting.inputs import InputError, ModelInputs, ObservedFrames, convert_units


def read_store_inputs(path: str | Path, model: ModelInputs, *, time: dt.datetime | None = None,
                      to_dbz: bool = False, to_rain: bool = False,
                      zr: tuple[float | None, float | None] = (None, None)) -> ObservedFrames:
    """The ``model.in_frames`` frames of the store at ``path`` ending at ``time`` (default: its last frame).

    Args:
        path: radar store (``*.zarr``).
        model: what the model expects.
        time: UTC time of the last observed frame (naive = UTC), or None for the store's last frame.
        to_dbz: convert rain to reflectivity; to_rain: reflectivity to rain (``Z = a R^b``, ``zr``).
        zr: (a, b) of the Z–R relation; None for Marshall-Palmer.

    Raises:
        InputError: naming the store and the fix, for frames the model cannot take.
    """
    store = RadarStore(path)
    step = int(store.attrs["time_step_seconds"])
    if step != model.step_seconds:
        raise InputError(f"{path}: frames are {step / 60:g} min apart, the model's time step is "
                         f"{model.step_minutes:g} min; forecast from a store of {model.step_minutes:g}-min frames")
    end = _index_of(store, path, time)
    start = end - model.in_frames + 1
    times = store.times[max(start, 0):end + 1]
    if start < 0 or np.any(store.event[start:end + 1] != store.event[end]) or np.any(
            np.diff(times.astype(np.int64)) != step):
        raise InputError(f"{path}: fewer than {model.in_frames} consecutive frames end at {store.times[end]} "
                         "(an event starts or a gap lies in between); pass a later --time")
    if not store.frame_valid[start:end + 1].all():
        missing = times[~store.frame_valid[start:end + 1]]
        raise InputError(f"{path}: frame {missing[0]} is missing (frame_valid false); the model needs "
                         f"{model.in_frames} present frames; pass another --time")
    values = _masked(store, start, end + 1)
    where = f"{path}@{store.times[end]}"
    values, note = convert_units(values, store.encoding.units, model, where=where, to_dbz=to_dbz,
                                 to_rain=to_rain, zr=zr,
                                 accutime_minutes=store.attrs.get("accumulation_minutes"))
    attrs = {key: str(store.attrs.get(key, "")) for key in ("title", "institution", "source", "licence", "citation")}
    if note:
        attrs["input_conversion"] = note
    return ObservedFrames(values=values, times=times.astype("datetime64[s]"), units=model.units,
                          grid=model_grid(store, None, "bilinear"), files=tuple(f"{path}@{t}" for t in times),
                          attrs=attrs)


def _index_of(store: RadarStore, path: str | Path, time: dt.datetime | None) -> int:
    if time is None:
        return len(store) - 1
    if time.tzinfo is not None:
        time = time.astimezone(dt.timezone.utc).replace(tzinfo=None)
    found = np.flatnonzero(store.times == np.datetime64(time, "s"))
    if not found.size:
        raise InputError(f"{path}: no frame at {time:%Y-%m-%d %H:%M:%S} UTC (its frames run from {store.times[0]} "
                         f"to {store.times[-1]}); pass --time of one of its frames")
    return int(found[0])


def _masked(store: RadarStore, start: int, stop: int) -> np.ndarray:
    """(T, H, W) float32 physical frames, NaN where the store marks pixels invalid or holds no data."""
    values = store.encoding.decode(store.read_raw(start, stop))
    pixel_valid = store.read_pixel_valid(start, stop)
    if pixel_valid is not None:
        values[~pixel_valid] = np.nan
    if store.static_mask is not None:
        values[:, ~store.static_mask] = np.nan
    return values
