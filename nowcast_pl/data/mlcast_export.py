"""Export a radar store or a forecast store as an mlcast dataset (:mod:`nowcast_pl.data.mlcast`).

:func:`export_mlcast` reads a radar store (``docs/data-format.md``) or a forecast store
(:mod:`nowcast_pl.data.forecast_store`) and writes one mlcast dataset:

* radar store: every valid frame, in time order; missing frames and the gaps between events are listed in
  ``missing_times``; pixels outside ``pixel_valid`` / ``static_mask`` are NaN;
* forecast store: the mlcast data variable is 3-D ``(time, y, x)``, so one export holds one lead time of one
  member (or the ensemble mean); its ``time`` is the valid time ``init_time + lead_time``.

The dataset is written beside ``dst`` as ``<dst>.partial`` in batches of frames and put at ``dst`` only when
complete (:func:`nowcast_pl.data.replace.replace_directory`), so a killed export never leaves a half dataset.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

from nowcast_pl.data.forecast_store import open_forecast
from nowcast_pl.data.georef import model_grid
from nowcast_pl.data.mlcast import (
    ENCODING_ATTRIBUTE,
    MlcastAttributes,
    MlcastForm,
    crs_attrs,
    form_of,
    latlon,
    missing_times,
)
from nowcast_pl.data.replace import replace_directory
from nowcast_pl.data.schema import SCHEMA_VERSION, TIME_UNITS
from nowcast_pl.data.store import RadarStore
from nowcast_pl.data.units import quantity_of

BATCH_FRAMES = 64
_TIME_ENCODING = {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64"}


@dataclass(frozen=True)
class _Source:
    """What is exported: sorted valid times, the grid, the form, and the frames batch by batch."""

    times: np.ndarray  # (T,) datetime64[s], strictly increasing
    y: np.ndarray
    x: np.ndarray
    projection: str
    form: MlcastForm
    long_name: str
    attrs: dict[str, Any]
    batches: Iterator[np.ndarray]  # (b, H, W) float32 in the form's units, NaN where no data, in time order


def export_mlcast(src: str | Path, dst: str | Path, attributes: MlcastAttributes, *,
                  lead_minutes: int | None = None, member: int | str = 0, overwrite: bool = False) -> dict[str, Any]:
    """Write the radar store or forecast store ``src`` as the mlcast dataset ``dst``.

    Args:
        src: a radar store or a forecast store (``nowcast predict``).
        dst: the mlcast dataset to write (a ``*.zarr`` directory).
        attributes: licence and provenance attributes (spec §5.2, §5.4).
        lead_minutes: forecast stores only: the lead time to export (one of the store's ``lead_time``).
        member: forecast stores only: the ensemble member (0..N-1) or ``"mean"`` for the ensemble mean.
        overwrite: replace ``dst`` if it is an mlcast dataset.

    Returns:
        ``{"dst", "variable", "frames", "missing_times"}``.

    Raises:
        FileNotFoundError: if ``src`` is not a Zarr store.
        FileExistsError: if ``dst`` exists and ``overwrite`` is False, or is not an mlcast dataset.
        ValueError: naming the field and the fix, if ``src`` cannot be written in mlcast form (no
            projection, a quantity mlcast does not hold, frames at the same time, an unknown lead time, ...).
    """
    src, dst = Path(src), Path(dst)
    _check_destination(dst, overwrite)
    kind = _kind(src)
    if kind == "radar":
        if lead_minutes is not None:
            raise ValueError(f"{src} is a radar store; lead_minutes (--lead-minutes) applies to forecast stores")
        source = _radar_source(src)
    else:
        if lead_minutes is None:
            raise ValueError(f"{src} is a forecast store: choose the lead time to export with lead_minutes "
                             "(--lead-minutes); mlcast datasets are (time, y, x)")
        source = _forecast_source(src, int(lead_minutes), member)
    missing = missing_times(source.times)
    partial = dst.with_name(dst.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by a killed export of the same destination
    _write(partial, source, missing, attributes)
    replace_directory(partial, dst)
    return {"dst": str(dst), "variable": source.form.variable, "frames": int(source.times.size),
            "missing_times": int(missing.size)}


def _kind(src: Path) -> str:
    if not (src / "zarr.json").is_file():
        raise FileNotFoundError(f"no Zarr store at {src}: expected a radar store (nowcast-prep) or a forecast store "
                                "(nowcast predict)")
    group = zarr.open_group(str(src), mode="r", zarr_format=3)
    if group.attrs.get("schema") == SCHEMA_VERSION:
        return "radar"
    if "forecast" in group.array_keys():
        return "forecast"
    raise ValueError(f"{src} is neither a radar store (attribute schema={SCHEMA_VERSION!r}) nor a forecast store "
                     "(array 'forecast')")


def _check_destination(dst: Path, overwrite: bool) -> None:
    if not dst.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
    meta = dst / "zarr.json"
    is_mlcast = meta.is_file() and "mlcast_dataset_identifier" in json.loads(meta.read_text()).get("attributes", {})
    if not is_mlcast:
        raise FileExistsError(f"{dst} exists and is not an mlcast dataset, so it is not replaced; choose another "
                              "destination or move it away yourself")


def _radar_source(src: Path) -> _Source:
    store = RadarStore(src)
    encoding = store.encoding
    form, factor = form_of(encoding.quantity, encoding.units)
    grid = model_grid(store, None, "bilinear")
    if not grid.georeferenced:
        raise ValueError(f"{src} has no projection and projected y/x coordinates; mlcast datasets are "
                         "georeferenced (spec §4.5): convert the source with a converter that records them")
    present = np.flatnonzero(store.frame_valid)
    if present.size == 0:
        raise ValueError(f"{src} has no valid frame to export")
    order = present[np.argsort(store.times[present], kind="stable")]
    times = store.times[order]
    same = np.flatnonzero(np.diff(times.astype(np.int64)) == 0)
    if same.size:
        first, second = (store.event_names[store.event[order[i]]] for i in (same[0], same[0] + 1))
        raise ValueError(f"{src}: events '{first}' and '{second}' both have a frame at {times[same[0]]}; an mlcast "
                         "dataset holds one frame per time (export a store whose events do not overlap)")
    attrs = {key: store.attrs[key] for key in ("title", "source", "citation") if store.attrs.get(key)}
    attrs["comment"] = (f"exported from the nowcast_pl radar store {src.name} (licence stated there: "
                        f"{store.attrs['licence']})")
    if factor == 1.0:
        attrs[ENCODING_ATTRIBUTE] = json.dumps({"dtype": encoding.dtype, "scale_factor": encoding.scale_factor,
                                                "add_offset": encoding.add_offset,
                                                "fill_value": encoding.fill_value})
    return _Source(times, grid.y, grid.x, grid.projection, form, encoding.long_name, attrs,
                   _store_batches(store, order, factor))


def _store_batches(store: RadarStore, order: np.ndarray, factor: float) -> Iterator[np.ndarray]:
    """Frames ``order`` of the store in physical values (× ``factor``), read as runs of consecutive frames."""
    breaks = np.flatnonzero(np.diff(order) != 1) + 1
    for run in np.split(order, breaks):
        for start in range(0, run.size, BATCH_FRAMES):
            first, last = int(run[start]), int(run[min(start + BATCH_FRAMES, run.size) - 1])
            values = store.encoding.decode(store.read_raw(first, last + 1)) * np.float32(factor)
            masks = store.read_pixel_valid(first, last + 1)
            if masks is not None:
                values[~masks] = np.nan
            if store.static_mask is not None:
                values[:, ~store.static_mask] = np.nan
            yield values


def _forecast_source(src: Path, lead_minutes: int, member: int | str) -> _Source:
    ds = open_forecast(src)
    leads = ds["lead_time"].values.astype(np.int64)
    if lead_minutes not in leads:
        raise ValueError(f"{src} has no lead time of {lead_minutes} min; its lead times are {leads.tolist()} "
                         "(--lead-minutes)")
    n_members = ds.sizes["member"]
    if member != "mean" and not (isinstance(member, int) and 0 <= member < n_members):
        raise ValueError(f"member={member!r} is not 'mean' nor one of the store's members 0..{n_members - 1} "
                         "(--member)")
    if "crs" not in ds or ds["y"].attrs.get("standard_name") != "projection_y_coordinate":
        raise ValueError(f"{src} is not georeferenced (no 'crs' grid mapping and projected y/x): its source store "
                         "had no projection; mlcast datasets are georeferenced (spec §4.5)")
    units = ds["forecast"].attrs["units"]
    quantity = ds.attrs.get("quantity") or quantity_of(units)[0]
    form, factor = form_of(quantity, units)
    init = ds["init_time"].values.astype("datetime64[s]")
    order = np.argsort(init, kind="stable")
    times = init[order] + np.timedelta64(lead_minutes, "m")
    field = ds["forecast"].sel(lead_time=lead_minutes)
    field = field.mean("member") if member == "mean" else field.isel(member=member)
    attrs = {"title": f"{ds.attrs.get('title', 'forecast')}, lead time {lead_minutes} min, member {member}",
             "source": ds.attrs.get("source", ""), "forecast_lead_time_minutes": lead_minutes,
             "forecast_member": str(member),
             "comment": f"exported from the nowcast_pl forecast store {src.name}; time is the valid time "
                        "init_time + lead time"}
    batches = (field.isel(init_time=order[i:i + BATCH_FRAMES]).values.astype(np.float32) * np.float32(factor)
               for i in range(0, order.size, BATCH_FRAMES))
    return _Source(times, ds["y"].values, ds["x"].values, ds["crs"].attrs["crs_wkt"], form,
                   f"{ds['forecast'].attrs.get('long_name', 'forecast')}, lead time {lead_minutes} min", attrs,
                   batches)


def _write(path: Path, source: _Source, missing: np.ndarray, attributes: MlcastAttributes) -> None:
    """Write the dataset at ``path``: coordinates and the first batch, then the other batches appended."""
    form, name = source.form, source.form.variable
    lat, lon = latlon(source.projection, source.y, source.x)
    created_on = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    variable_attrs = {"standard_name": form.standard_name, "long_name": source.long_name, "units": form.units,
                      "grid_mapping": "crs"}
    coords = {
        "y": ("y", source.y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
        "x": ("x", source.x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
        "lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
    }
    if missing.size:
        coords["missing_times"] = ("missing_times", missing.astype("datetime64[ns]"),
                                   {"long_name": "times without data, not in time"})
    h, w = source.y.size, source.x.size
    encoding = {name: {"chunks": (1, h, w), "compressors": [ZstdCodec(level=3, checksum=True)]},
                "time": _TIME_ENCODING, **({"missing_times": _TIME_ENCODING} if missing.size else {})}
    global_attrs = {"Conventions": "CF-1.8", **source.attrs, **attributes.global_attrs(created_on)}
    if missing.size:
        # The validator calls a time axis with gaps variable and asks where its regular step starts (spec §5.1):
        # at the first time, the gaps being listed in missing_times.
        global_attrs["consistent_timestep_start"] = f"{source.times[0].astype('datetime64[s]')}"
    written = 0
    for values in source.batches:
        times = source.times[written:written + values.shape[0]].astype("datetime64[ns]")
        frames = xr.Dataset({name: (("time", "y", "x"), values, variable_attrs)},
                            coords={"time": ("time", times, {"standard_name": "time", "axis": "T"})})
        if written == 0:
            frames = frames.assign_coords(coords).assign(crs=((), np.int32(0), crs_attrs(source.projection)))
        frames.attrs = global_attrs  # every write replaces the group's attributes
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            if written == 0:
                frames.to_zarr(path, mode="w-", zarr_format=3, consolidated=True, encoding=encoding)
            else:
                frames.to_zarr(path, append_dim="time", zarr_format=3, consolidated=True)
        written += values.shape[0]
