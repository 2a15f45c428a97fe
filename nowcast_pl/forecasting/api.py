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
             pixel_size_m: float | None = None, **sampler_settings: Any) -> Any:
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
            ``units`` attribute. Without either, ``precip`` is taken to be in the model's units. As in pysteps,
            reflectivity in decibels is ``unit="dBZ", transform="dB"`` (a missing ``transform`` is read so too);
            ``transform=None`` with ``dBZ`` would be linear Z and is refused, as are other transforms.
        tile_batch: tiles (of all members) forecast together; bounds memory.
        overlap: pixels shared by neighbouring tiles (default a quarter of the tile).
        tile_size, resize_factor: the model's frame size and the input pixels per model pixel, for a model
            whose frame recipe is not recorded (``model.frame_preparation`` is None); override it otherwise.
        pixel_size_m: grid spacing of ``precip`` in metres (default: pysteps' ``xpixelsize`` when its
            ``cartesian_unit`` is m or km). When it and the store's spacing are known, the input is resized so
            that a model pixel covers the ground it covered in training; otherwise by the recorded factor.
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
    prep = _preparation(model, tile_size, resize_factor, _pixel_size(pixel_size_m, metadata))
    frames = _last_frames(values, model.in_frames)
    leads = _check_leads(leads, model.out_frames)
    if members < 1 or tile_batch < 1:
        raise ValueError(f"members and tile_batch must be >= 1, got {members} and {tile_batch}")
    if model.stochastic and not model.accepts_row_noise:
        raise ValueError(f"{type(model).__name__} draws its randomness outside randn_like_rows, so tiles cannot "
                         "share one noise field; forecast it with its own code")
    scale = _unit_scale(units, prep.units)
    model_frames = np.empty((len(frames), *prep.model_grid(frames.shape[-2:])), dtype=np.float32)
    for index, frame in enumerate(frames):  # a frame at a time: no temporaries of the whole input
        model_frames[index] = prep.prepare(frame[None] * scale)[0]
    overlap = (prep.tile[0] // 4, prep.tile[1] // 4) if overlap is None else overlap
    layout = plan_tiles(model_frames.shape[-2:], prep.tile, overlap=overlap, multiple=model.noise_stride)
    computed = model.effective_members(members)
    with _sampler_settings(model, sampler_settings), _eval_mode(model), torch.no_grad():
        result = forecast_tiles(model, model_frames, layout, members=computed, seed=seed, leads=leads,
                                tile_batch=tile_batch)
    output = _to_input_grid(result, prep, frames, members, scale)
    return output if coords is None else _as_data_array(output, precip, prep, units)


def _to_input_grid(result: np.ndarray, prep: FramePreparation, frames: np.ndarray, members: int,
                   scale: float) -> np.ndarray:
    """(computed members, leads, h, w) in [0, 1] → (members, leads, H, W) in the input's units, NaN where every
    input frame is NaN. On the model's own grid the result is converted in place; otherwise a lead at a time,
    so the only domain-size arrays are the result and the output."""
    outside = np.ones(frames.shape[-2:], dtype=bool)
    for frame in frames:
        outside &= np.isnan(frame)
    computed, leads = result.shape[:2]
    if computed == members and result.shape[-2:] == frames.shape[-2:]:
        lo, hi = prep.value_range
        for member_leads in result:
            for field in member_leads:
                field *= (hi - lo) / scale
                field += lo / scale
                field[outside] = np.nan
        return result
    output = np.empty((members, leads, *frames.shape[-2:]), dtype=np.float32)
    for member in range(computed):
        for lead in range(leads):
            output[member, lead] = prep.restore(result[member, lead:lead + 1], frames.shape[-2:])[0] / scale
            output[member, lead][outside] = np.nan
    output[computed:] = output[:1]
    return output


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
        if "transform" in precip.attrs:
            metadata.setdefault("transform", precip.attrs["transform"])
    values = np.asarray(precip.values if coords is not None else precip, dtype=np.float32)
    if values.ndim != 3:
        raise ValueError(f"precip must be (t, y, x) frames, oldest first; got shape {values.shape}")
    units = metadata.get("unit")
    if units is not None:
        _check_transform(units, metadata)
    return values, units, coords


def _check_transform(units: str, metadata: dict[str, Any]) -> None:
    """Accept pysteps' decibel reflectivity (dBZ, transform dB) and untransformed rain; refuse the rest."""
    parse_units(units)
    decibels = same_units(units, "dBZ")
    transform = metadata.get("transform", "dB" if decibels else None)
    if decibels and transform != "dB":
        raise ValueError(f"precip metadata unit='dBZ' with transform={transform!r} is linear reflectivity Z in "
                         "pysteps; give decibels (10 log10 Z) with transform='dB'")
    if not decibels and transform is not None:
        raise ValueError(f"precip is transformed (metadata transform={transform!r}); give it untransformed, e.g. "
                         "with pysteps.utils.transformation's inverse=True")


def _unit_scale(units: str | None, model_units: str) -> float:
    """Factor from the input's units to the model's (1 when either is unknown)."""
    if units is None or not model_units or same_units(units, model_units):
        return 1.0
    try:
        return conversion_factor(units, model_units)
    except ValueError:
        raise ValueError(f"precip is in {units!r} but the model forecasts {model_units!r}; convert it first (e.g. "
                         "pysteps.utils.conversion.to_reflectivity / to_rainrate)") from None


def _pixel_size(pixel_size_m: float | None, metadata: dict[str, Any] | None) -> float | None:
    """The input's grid spacing in metres: given, or pysteps' ``xpixelsize`` in ``cartesian_unit`` m or km."""
    if pixel_size_m is not None or not metadata or metadata.get("xpixelsize") is None:
        return pixel_size_m
    metres = {"m": 1.0, "km": 1000.0}.get(metadata.get("cartesian_unit"))
    return None if metres is None else float(metadata["xpixelsize"]) * metres


def _preparation(model: NowcastTask, tile_size: Any, resize_factor: float | None,
                 pixel_size_m: float | None) -> FramePreparation:
    prep = getattr(model, "frame_preparation", None)
    if prep is None:
        if tile_size is None:
            raise ValueError(f"{type(model).__name__} records no frame recipe (a model not from load_forecaster or "
                             "a checkpoint from before recipes): pass tile_size=<its frame size> (and "
                             "resize_factor if its store was resized)")
        hp = model.hparams
        prep = FramePreparation(value_range=model.value_range, units=hp.get("units", ""),
                                time_step_minutes=hp.get("time_step_minutes", 5.0), tile=(1, 1))
    prep = prep.for_pixel_size(pixel_size_m)
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


@contextlib.contextmanager
def _eval_mode(model: NowcastTask) -> Iterator[None]:
    """Forecast in eval mode (dropout off, BatchNorm statistics fixed); the model's mode comes back afterwards."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


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
