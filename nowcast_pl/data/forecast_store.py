"""Forecast files: a CF-conventions Zarr store (one per ``nowcast predict``), and pysteps NetCDF files.

The Zarr layout (opened by plain ``xarray.open_zarr``, metadata consolidated)::

    forecast   (init_time, member, lead_time, y, x) float32, physical units, NaN where not written
    init_time  (init_time)  int64 seconds since 1970-01-01 UTC: time of the last observed frame
    lead_time  (lead_time)  int64 minutes after init_time
    member     (member)     int32 ensemble member 0..N-1
    y, x       (y), (x)     float64 pixel centres in metres on the model grid (when the source store has
                            coordinates or a pixel size)
    crs        ()           CF grid mapping of the source store's projection (when it has one)

Each window is one chunk, written as soon as it is forecast, so memory stays bounded by a batch.

Completeness: a store is created with the global attribute ``complete = false`` under a temporary name,
``<name>.partial`` beside the final path (:func:`partial_path`), and :func:`finish_forecast_store` sets
``complete = true`` and only then puts it at the final path (:func:`nowcast_pl.data.replace.replace_directory`).
A killed ``nowcast predict`` therefore leaves the previous store untouched, and :func:`open_forecast`, which
every reader of this project uses, refuses a store that is not marked complete.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from nowcast_pl.data.georef import ModelGrid
from nowcast_pl.data.replace import replace_directory
from nowcast_pl.data.schema import TIME_UNITS
from nowcast_pl.data.store import consolidate
from nowcast_pl.pysteps_import import import_pysteps

CF_CONVENTIONS = "CF-1.8"


def create_forecast_store(path: str | Path, *, init_times: np.ndarray, members: int, lead_minutes: np.ndarray,
                          grid: ModelGrid, shape: tuple[int, int], units: str,
                          attrs: dict[str, Any]) -> None:
    """Create (replacing) an empty forecast store, marked incomplete, with its coordinates; consolidate it.

    Args:
        path: the directory to write (:func:`partial_path` of the final ``*.zarr``).
        init_times: (N,) int64 UTC epoch seconds of the windows' last observed frames.
        members: ensemble members per window.
        lead_minutes: (T_out,) minutes of each lead time.
        grid: model-grid coordinates and projection (:func:`nowcast_pl.data.georef.model_grid`).
        shape: model grid (h, w).
        units: physical units of the forecast.
        attrs: global attributes (title, institution, source, model, ...), added to the CF ones.
    """
    h, w = shape
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.update_attributes({"Conventions": CF_CONVENTIONS, **attrs, "complete": False,
                             "history": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} nowcast predict"})
    field_attrs = {"units": units, "long_name": f"{attrs.get('quantity', 'precipitation')} forecast"}
    if grid.georeferenced:
        _coordinate(group, "crs", np.array(0, dtype=np.int32), [], grid.cf_grid_mapping())
        field_attrs["grid_mapping"] = "crs"
    group.create_array("forecast", shape=(init_times.size, members, lead_minutes.size, h, w), dtype="float32",
                       chunks=(1, members, lead_minutes.size, h, w), fill_value=np.nan,
                       dimension_names=["init_time", "member", "lead_time", "y", "x"], attributes=field_attrs)
    _coordinate(group, "init_time", init_times.astype(np.int64), ["init_time"],
                {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "standard_name": "forecast_reference_time",
                 "long_name": "time of the last observed frame"})
    _coordinate(group, "lead_time", lead_minutes.astype(np.int64), ["lead_time"],
                {"units": "minutes", "standard_name": "forecast_period", "long_name": "time after init_time"})
    _coordinate(group, "member", np.arange(members, dtype=np.int32), ["member"],
                {"standard_name": "realization", "long_name": "ensemble member"})
    if grid.y is not None:
        kind = "projection" if grid.projected else "grid"
        for name, values in (("y", grid.y), ("x", grid.x)):
            _coordinate(group, name, values, [name], _axis_attrs(name, kind))
    consolidate(path)


def _axis_attrs(name: str, kind: str) -> dict[str, str]:
    if kind == "projection":
        return {"units": "m", "axis": name.upper(), "standard_name": f"projection_{name}_coordinate",
                "long_name": f"{name} coordinate of the pixel centre"}
    return {"units": "m", "axis": name.upper(),
            "long_name": f"{name} distance of the pixel centre from the grid's lower-left corner (no projection)"}


def _coordinate(group: zarr.Group, name: str, values: np.ndarray, dims: list[str], attrs: dict[str, Any]) -> None:
    array = group.create_array(name, shape=values.shape, dtype=values.dtype, fill_value=0,
                               dimension_names=dims, attributes=attrs)
    array[...] = values


def partial_path(path: str | Path) -> Path:
    """Where the store for ``path`` is written until it is complete: ``<path>.partial``, in the same folder."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def finish_forecast_store(partial: Path, path: Path) -> None:
    """Mark a fully written store complete and put it at ``path``, replacing the previous store there."""
    zarr.open_group(str(partial), mode="r+", zarr_format=3).attrs["complete"] = True
    consolidate(partial)
    replace_directory(partial, path)


def open_forecast(path: str | Path) -> xr.Dataset:
    """Open a forecast store with xarray, refusing one that ``nowcast predict`` did not finish.

    Raises:
        FileNotFoundError: if there is no store at ``path``.
        ValueError: if the store is not marked ``complete``.
    """
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"no forecast store at {path}: expected a Zarr directory written by `nowcast predict`")
    dataset = xr.open_zarr(path)
    if dataset.attrs.get("complete") is not True:
        raise ValueError(f"forecast store {path} is not marked complete (attribute 'complete' is "
                         f"{dataset.attrs.get('complete')!r}): its `nowcast predict` was interrupted or predates "
                         "the mark; rerun `nowcast predict`")
    return dataset


def open_forecast_array(path: str | Path) -> zarr.Array:
    """The ``forecast`` array of a store made by :func:`create_forecast_store`, for writing windows."""
    return zarr.open_group(str(path), mode="r+", zarr_format=3)["forecast"]


def write_netcdf(folder: Path, *, window: int, init_time: int, forecast: np.ndarray, lead_minutes: np.ndarray,
                 metadata: dict[str, Any], institution: str) -> Path:
    """One window's ensemble as a pysteps forecast NetCDF (CF-1.7), through pysteps' own exporter.

    Args:
        folder: output folder (created).
        window: window index, part of the file name.
        init_time: UTC epoch seconds of the last observed frame (the file's start date).
        forecast: (members, T_out, h, w) physical values.
        lead_minutes: (T_out,) minutes of each lead, multiples of the first.
        metadata: :meth:`nowcast_pl.data.georef.ModelGrid.pysteps_metadata`.
        institution: written as the file's ``institution``.

    Returns:
        The path ``folder/forecast_<YYYYmmddTHHMMSS>_w<window>.nc``.
    """
    exporters = import_pysteps("pysteps.io.exporters")
    folder.mkdir(parents=True, exist_ok=True)
    start = dt.datetime.fromtimestamp(int(init_time), dt.timezone.utc).replace(tzinfo=None)
    prefix = f"forecast_{start:%Y%m%dT%H%M%S}_w{window:05d}"
    step = int(lead_minutes[0])
    exporter = exporters.initialize_forecast_exporter_netcdf(
        str(folder), prefix, start, step, [int(m) // step for m in lead_minutes], forecast.shape[-2:],
        metadata, n_ens_members=forecast.shape[0], institution=institution)
    field = forecast.astype(np.float32)
    exporters.export_forecast_dataset(field if field.shape[0] > 1 else field[0], exporter)
    exporters.close_forecast_files(exporter)
    return folder / f"{prefix}.nc"
