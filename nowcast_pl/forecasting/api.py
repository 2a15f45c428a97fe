"""``forecast``: an ensemble nowcast of any domain from the last observed frames, in pysteps' conventions."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from nowcast_pl.data.preparation import FramePreparation
from nowcast_pl.data.units import conversion_factor, parse_units, same_units
from nowcast_pl.forecasting.noise import TileNoise
from nowcast_pl.forecasting.tiles import TileLayout, crop_padded, plan_tiles
from nowcast_pl.tasks.base import NowcastTask

SAMPLER_OPTIONS = ("sampler", "sampling_steps", "eta", "guidance_scale")


def forecast(model: NowcastTask, precip: Any, *, members: int = 1, seed: int = 0, leads: int | None = None,
             metadata: dict[str, Any] | None = None, tile_batch: int = 8, overlap: int | None = None,
             tile_size: int | tuple[int, int] | None = None, resize_factor: float | None = None,
             **sampler_settings: Any) -> Any:
    """Forecast ``members`` futures of the grid ``precip`` with ``model``, tile by tile.

    Args:
        model: a task from :func:`~nowcast_pl.forecasting.load_forecaster` (or any :class:`NowcastTask`).
        precip: (t, y, x) NumPy array (oldest frame first, NaN = no data) or xarray DataArray with dims
            (time, y, x), in the units of the model's store (or units that convert to them, e.g. mm/h for
            a mm h-1 store); at least the model's ``in_frames`` frames, of which the last ones are used.
        members: ensemble members (deterministic models forecast once; every member is that forecast).
        seed: member n is a function of (seed, n) only: its noise is the same for any tile batch or device
            (values agree up to float rounding; bit-identical for the same tile_batch and device).
        leads: lead times to return, 1 to the model's ``out_frames`` (default all).
        metadata: pysteps metadata of ``precip`` (``unit``, ``transform``); the units of a DataArray are its
            ``units`` attribute. Without either, ``precip`` is taken to be in the model's units.
        tile_batch: tiles (of all members) forecast together; bounds memory.
        overlap: pixels shared by neighbouring tiles (default a quarter of the tile).
        tile_size, resize_factor: the model's frame size and the store pixels per model pixel, for a model
            whose frame recipe is not recorded (``model.frame_preparation`` is None); override it otherwise.
        **sampler_settings: run-time sampler settings of a diffusion task for this call (``sampler``,
            ``sampling_steps``, ``eta``, ``guidance_scale``).

    Returns:
        (members, leads, y, x) float32 array in the units of ``precip`` (NaN where every input frame had no
        data), or for a DataArray a DataArray with dims (member, lead_time, y, x), its y/x coordinates and,
        when its time coordinate is datetime, a ``time`` coordinate of valid times.

    Raises:
        ValueError: naming the argument, for too few frames, a wrong rank, units that do not convert, a
            transformed input, a missing frame recipe, or a stochastic model whose noise cannot be tiled.
    """
    values, units, coords = _unpack(precip, metadata)
    prep = _preparation(model, tile_size, resize_factor)
    frames = _last_frames(values, model.in_frames)
    leads = _check_leads(leads, model.out_frames)
    if members < 1 or tile_batch < 1:
        raise ValueError(f"members and tile_batch must be >= 1, got {members} and {tile_batch}")
    if model.stochastic and not model.accepts_row_noise:
        raise ValueError(f"{type(model).__name__} draws its randomness outside randn_like_rows, so tiles cannot "
                         "share one noise field; forecast it with its own code")
    scale = _unit_scale(units, prep.units)
    model_frames = prep.prepare(frames * scale)
    overlap = prep.tile[0] // 4 if overlap is None else overlap
    layout = plan_tiles(model_frames.shape[-2:], prep.tile, overlap=overlap, multiple=_frame_multiple(model))
    computed = model.effective_members(members)
    with _sampler_settings(model, sampler_settings), torch.no_grad():
        result = forecast_tiles(model, model_frames, layout, members=computed, seed=seed, leads=leads,
                                tile_batch=tile_batch)
    outside = np.isnan(frames).all(axis=0)
    output = np.empty((members, leads, *frames.shape[-2:]), dtype=np.float32)
    for member in range(computed):
        output[member] = prep.restore(result[member], frames.shape[-2:]) / scale
        output[member][:, outside] = np.nan
    output[computed:] = output[0]
    return output if coords is None else _as_data_array(output, precip, prep, units)


def forecast_tiles(model: NowcastTask, frames: np.ndarray, layout: TileLayout, *, members: int, seed: int,
                   leads: int, tile_batch: int) -> np.ndarray:
    """Blend the tile forecasts of every member over the domain.

    Args:
        frames: (T_in, H, W) float32 model frames in [0, 1], H x W = ``layout.domain``.
        layout: the tiles (see :func:`~nowcast_pl.forecasting.tiles.plan_tiles`).

    Returns: (members, leads, H, W) float32 in [0, 1]. Memory beyond the inputs and this result: one batch of
    ``tile_batch`` tiles and its network activations.
    """
    height, width = layout.domain
    window = layout.weights().astype(np.float32)
    blended = np.zeros((members, leads, height, width), dtype=np.float32)
    total = np.zeros((height, width), dtype=np.float32)
    for top, left in layout.origins():
        h, w = min(layout.tile[0], height - top), min(layout.tile[1], width - left)
        total[top:top + h, left:left + w] += window[:h, :w]
    rows = [(member, origin) for member in range(members) for origin in layout.origins()]
    for first in range(0, len(rows), tile_batch):
        batch = rows[first:first + tile_batch]
        tiles = np.stack([crop_padded(frames, top, left, layout.tile) for _, (top, left) in batch])
        inputs = torch.from_numpy(tiles)[:, :, None].to(model.device)
        if model.stochastic:
            outputs = model.forecast_rows(inputs, [TileNoise(seed, m, o, layout.tile) for m, o in batch])
        else:
            outputs = model.forecast(inputs)
        outputs = outputs[:, :leads, 0].clamp(0.0, 1.0).float().cpu().numpy()
        for (member, (top, left)), tile in zip(batch, outputs, strict=True):
            h, w = min(layout.tile[0], height - top), min(layout.tile[1], width - left)
            blended[member, :, top:top + h, left:left + w] += tile[:, :h, :w] * window[:h, :w]
    blended /= total
    return blended


def _unpack(precip: Any, metadata: dict[str, Any] | None) -> tuple[np.ndarray, str | None, Any]:
    """(values, units or None, coords or None) of a NumPy array or DataArray, with pysteps' metadata checked."""
    metadata = dict(metadata or {})
    coords = None
    if hasattr(precip, "dims") and hasattr(precip, "values"):
        if tuple(precip.dims)[-2:] != ("y", "x") or precip.ndim != 3:
            raise ValueError(f"precip: a DataArray needs dims (time, y, x), got {tuple(precip.dims)}")
        coords = precip.coords
        metadata.setdefault("unit", precip.attrs.get("units"))
        metadata.setdefault("transform", precip.attrs.get("transform"))
    values = np.asarray(precip.values if coords is not None else precip, dtype=np.float32)
    if values.ndim != 3:
        raise ValueError(f"precip must be (t, y, x) frames, oldest first; got shape {values.shape}")
    if metadata.get("transform") is not None:
        raise ValueError(f"precip is transformed (metadata transform={metadata['transform']!r}); give it "
                         "untransformed, e.g. with pysteps.utils.transformation's inverse=True")
    units = metadata.get("unit")
    if units is not None:
        parse_units(units)
    return values, units, coords


def _unit_scale(units: str | None, model_units: str) -> float:
    """Factor from the input's units to the model's (1 when either is unknown)."""
    if units is None or not model_units or same_units(units, model_units):
        return 1.0
    try:
        return conversion_factor(units, model_units)
    except ValueError:
        raise ValueError(f"precip is in {units!r} but the model forecasts {model_units!r}; convert it first (e.g. "
                         "pysteps.utils.conversion.to_reflectivity / to_rainrate)") from None


def _preparation(model: NowcastTask, tile_size: Any, resize_factor: float | None) -> FramePreparation:
    prep = getattr(model, "frame_preparation", None)
    if prep is None:
        if tile_size is None:
            raise ValueError(f"{type(model).__name__} records no frame recipe (a model not from load_forecaster or "
                             "a checkpoint from before recipes): pass tile_size=<its frame size> (and "
                             "resize_factor if its store was resized)")
        hp = model.hparams
        prep = FramePreparation(value_range=model.value_range, units=hp.get("units", ""),
                                time_step_minutes=hp.get("time_step_minutes", 5.0), tile=(1, 1))
    changes = {}
    if tile_size is not None:
        changes["tile"] = (tile_size, tile_size) if isinstance(tile_size, int) else tuple(tile_size)
    if resize_factor is not None:
        changes["factor"] = (float(resize_factor), float(resize_factor))
    return dataclasses.replace(prep, **changes) if changes else prep


def _last_frames(values: np.ndarray, in_frames: int) -> np.ndarray:
    if values.shape[0] < in_frames:
        raise ValueError(f"precip has {values.shape[0]} frames; the model needs the last {in_frames}")
    return values[-in_frames:]


def _check_leads(leads: int | None, out_frames: int) -> int:
    if leads is None:
        return out_frames
    if not 1 <= leads <= out_frames:
        raise ValueError(f"leads must be in [1, {out_frames}] (the model's out_frames), got {leads}")
    return int(leads)


def _frame_multiple(model: NowcastTask) -> int:
    """Tile origins are multiples of this: the network's total downsampling (1 when it has none)."""
    return int(getattr(getattr(model, "net", None), "frame_multiple", 1))


@contextlib.contextmanager
def _sampler_settings(model: NowcastTask, settings: dict[str, Any]) -> Iterator[None]:
    """Apply run-time sampler settings for one forecast; the model's own come back afterwards."""
    unknown = sorted(set(settings) - set(SAMPLER_OPTIONS))
    if unknown:
        raise ValueError(f"forecast() got unknown options {unknown}; sampler settings are {list(SAMPLER_OPTIONS)}")
    given = {k: v for k, v in settings.items() if v is not None}
    if not given:
        yield
        return
    if not hasattr(model, "sampling"):
        raise ValueError(f"{type(model).__name__} is not a diffusion task; it takes no {sorted(given)}")
    saved = model.sampling
    model.sampling = dataclasses.replace(saved, **given)
    try:
        model.sampling.check(timesteps=model.timesteps, supports_guidance=model.supports_guidance,
                             task=type(model).__name__)
        yield
    finally:
        model.sampling = saved


def _as_data_array(output: np.ndarray, precip: Any, prep: FramePreparation, units: str | None) -> Any:
    import xarray as xr

    step = np.timedelta64(round(prep.time_step_minutes * 60), "s")
    lead_time = (np.arange(1, output.shape[1] + 1) * step).astype("timedelta64[s]")
    coords: dict[str, Any] = {"member": np.arange(output.shape[0]), "lead_time": lead_time}
    coords |= {name: precip.coords[name] for name in ("y", "x") if name in precip.coords}
    if "time" in precip.coords and np.issubdtype(precip.coords["time"].dtype, np.datetime64):
        coords["time"] = ("lead_time", precip.coords["time"].values[-1] + lead_time)
    attrs = {"units": units or prep.units, "long_name": "ensemble nowcast"}
    return xr.DataArray(output, dims=("member", "lead_time", "y", "x"), coords=coords, attrs=attrs)
