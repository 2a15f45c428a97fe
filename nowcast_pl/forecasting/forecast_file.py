"""The forecast file of ``nowcast forecast``: one CF-1.8 NetCDF (or Zarr) dataset on the input's grid.

Layout (``OUT.nc`` opens with ``xarray.open_dataset`` and with pysteps' ``import_netcdf_pysteps``)::

    reflectivity | precip_intensity | precip_accum   (member, lead_time, y, x) float32, the model's units
                                     (pysteps' variable name for dBZ, mm/h, mm; ``forecast`` for other units)
    ensemble_mean            (lead_time, y, x)            mean over members
    exceedance_probability   (threshold, lead_time, y, x) fraction of members >= threshold (when the model
                                                          has thresholds)
    member                   (member)      int32, CF ``realization``
    lead_time                (lead_time)   minutes after forecast_reference_time (CF ``forecast_period``)
    time                     (lead_time)   valid time, in seconds since forecast_reference_time (pysteps reads
                                           its lead times from it)
    forecast_reference_time  ()            time of the last observed frame
    threshold                (threshold)   the model's event thresholds, in its units
    y, x                     (y), (x)      pixel centres (m), projection coordinates of the input grid
    <grid_mapping_name>      ()            CF grid mapping of the input projection (named as pysteps' exporter
                                           names it, e.g. ``polar_stereographic``, which pysteps' importer reads)

Pixels without data in every observed frame (outside the radar coverage) are NaN in the forecast. The file is
written under a temporary name beside ``OUT`` and renamed when complete, so ``OUT`` is never half-written; an
existing ``OUT`` is replaced only when asked.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nowcast_pl.data.replace import replace_directory
from nowcast_pl.data.store import consolidate
from nowcast_pl.data.units import same_units
from nowcast_pl.forecasting.inputs import ModelInputs, ObservedFrames

CF_CONVENTIONS = "CF-1.8"
# pysteps' variable names and CF standard names by unit (pysteps.io.exporters, CF standard-name table).
VARIABLES = {"dBZ": ("reflectivity", "equivalent_reflectivity_factor"),
             "mm/h": ("precip_intensity", "rainfall_rate"),
             "mm": ("precip_accum", "thickness_of_rainfall_amount")}
FORMATS = {".nc": "netcdf", ".zarr": "zarr"}


def forecast_dataset(forecast: np.ndarray, observed: ObservedFrames, model: ModelInputs, *,
                     attrs: dict[str, Any]) -> xr.Dataset:
    """The forecast as a CF dataset (layout in the module docstring).

    Args:
        forecast: (members, T_out, H, W) physical values in ``model.units`` on the observed grid.
        observed: the frames it starts from (grid, time, provenance).
        model: the model's units, time step and thresholds.
        attrs: further global attributes (model, checkpoint, members, seed, ...).
    """
    members, leads, h, w = forecast.shape
    if (h, w) != observed.values.shape[-2:]:
        raise ValueError(f"forecast grid {(h, w)} differs from the observed grid {observed.values.shape[-2:]}")
    outside = np.isnan(observed.values).all(axis=0)
    field = np.where(outside, np.nan, forecast).astype(np.float32)
    name, standard_name = _variable(model.units)
    init = observed.init_time.astype("datetime64[ns]")
    lead = np.arange(1, leads + 1) * np.timedelta64(model.step_seconds, "s")
    dims = ("member", "lead_time", "y", "x")
    field_attrs = {"units": model.units, "long_name": f"forecast {name.replace('_', ' ')}",
                   **({"standard_name": standard_name} if standard_name else {})}
    data = {
        name: (dims, field, field_attrs),
        "ensemble_mean": (dims[1:], field.mean(axis=0), {**field_attrs, "long_name": "ensemble mean"}),
    }
    thresholds = np.asarray(model.thresholds, dtype=np.float64)
    if thresholds.size:
        probability = (field[None] >= thresholds[:, None, None, None, None]).mean(axis=1).astype(np.float32)
        probability[:, :, outside] = np.nan
        data["exceedance_probability"] = (("threshold", *dims[1:]), probability,
                                          {"units": "1", "long_name": "fraction of members at or above the threshold"})
    coords = {
        "member": ("member", np.arange(members, dtype=np.int32),
                   {"standard_name": "realization", "long_name": "ensemble member"}),
        "lead_time": ("lead_time", lead.astype("timedelta64[ns]"),
                      {"standard_name": "forecast_period", "long_name": "time after forecast_reference_time"}),
        "time": ("lead_time", init + lead, {"standard_name": "time", "long_name": "valid time"}),
        "forecast_reference_time": ((), init, {"standard_name": "forecast_reference_time",
                                               "long_name": "time of the last observed frame"}),
    }
    if thresholds.size:
        coords["threshold"] = ("threshold", thresholds, {"units": model.units, "long_name": "event threshold"})
    dataset = xr.Dataset(data, coords=coords, attrs=_global_attrs(observed, attrs))
    return _georeference(dataset, observed, list(data))


def _variable(units: str) -> tuple[str, str]:
    return next((VARIABLES[key] for key in VARIABLES if same_units(units, key)), ("forecast", ""))


def _global_attrs(observed: ObservedFrames, attrs: dict[str, Any]) -> dict[str, Any]:
    given = observed.attrs
    now = dt.datetime.now(dt.timezone.utc)
    out = {"Conventions": CF_CONVENTIONS, "title": f"nowcast_pl forecast from {given.get('title', 'radar frames')}",
           "institution": given.get("institution", ""), "source": f"nowcast_pl forecast of {given.get('source', '')}",
           "references": given.get("citation", ""), "licence": given.get("licence", ""),
           "history": f"{now:%Y-%m-%dT%H:%M:%SZ} nowcast forecast",
           "input_files": "\n".join(observed.files), "projection": observed.grid.projection}
    if "input_conversion" in given:
        out["input_conversion"] = given["input_conversion"]
    return {**out, **{k: v for k, v in attrs.items() if v is not None}}


def _georeference(dataset: xr.Dataset, observed: ObservedFrames, variables: list[str]) -> xr.Dataset:
    grid = observed.grid
    if grid.y is None:
        return dataset
    kind = "projection" if grid.projected else "distance"
    for axis, values in (("y", grid.y), ("x", grid.x)):
        attrs = {"units": "m", "axis": axis.upper(), "long_name": f"{axis} coordinate of the pixel centre"}
        if kind == "projection":
            attrs["standard_name"] = f"projection_{axis}_coordinate"
        dataset = dataset.assign_coords({axis: (axis, np.asarray(values, np.float64), attrs)})
    if not grid.georeferenced:
        return dataset
    mapping = _with_pole_latitude(grid.cf_grid_mapping())
    name = str(mapping.get("grid_mapping_name") or "crs")
    dataset[name] = xr.DataArray(np.int32(0), attrs=mapping)
    for variable in variables:
        dataset[variable].attrs["grid_mapping"] = name
    return dataset


def _with_pole_latitude(mapping: dict[str, Any]) -> dict[str, Any]:
    """Add ``latitude_of_projection_origin`` (±90) to a polar stereographic mapping where pyproj leaves it out
    (variant B): CF §F requires it, and pysteps' importer reads the projection from it."""
    if mapping.get("grid_mapping_name") != "polar_stereographic" or "latitude_of_projection_origin" in mapping:
        return mapping
    return {**mapping, "latitude_of_projection_origin": 90.0 if mapping.get("standard_parallel", 90.0) >= 0 else -90.0}


def output_format(path: str | Path) -> str:
    """``"netcdf"`` for ``*.nc``, ``"zarr"`` for ``*.zarr``.

    Raises:
        ValueError: for another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"--output {path}: give a .nc (NetCDF) or .zarr (Zarr) path")
    return FORMATS[suffix]


def check_writable(path: Path, *, overwrite: bool) -> None:
    """Refuse an existing ``path`` unless ``overwrite``; never replace a folder that is not a Zarr store at a
    ``.zarr`` path, nor a file by a store.

    Raises:
        FileExistsError: naming the path and the fix.
    """
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or another --output")
    wants_zarr = path.suffix.lower() == ".zarr"
    is_zarr = path.is_dir() and any((path / name).exists() for name in ("zarr.json", ".zgroup"))
    if path.is_dir() != wants_zarr or (wants_zarr and not is_zarr):
        raise FileExistsError(f"{path} exists and is not a file of the kind written there; --overwrite replaces "
                              "only a forecast file or Zarr store, choose another --output")


def write_forecast(dataset: xr.Dataset, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``dataset`` to ``path`` (``.nc`` or ``.zarr``) atomically: ``<path>.partial``, then renamed.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False, or holds something else.
        ValueError: for a suffix other than ``.nc``/``.zarr``.
    """
    path = Path(path)
    kind = output_format(path)
    check_writable(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    _remove(partial)
    encoding = _encoding(dataset, kind)
    try:
        if kind == "netcdf":
            dataset.to_netcdf(partial, engine="netcdf4", format="NETCDF4", encoding=encoding)
            os.replace(partial, path)
        else:
            dataset.to_zarr(partial, mode="w", encoding=encoding, consolidated=False, zarr_format=3)
            consolidate(partial)
            replace_directory(partial, path)
    finally:
        _remove(partial)
    return path


def _encoding(dataset: xr.Dataset, kind: str) -> dict[str, dict[str, Any]]:
    """Lead times in minutes, valid times in seconds after the reference time (pysteps' ``time``), compressed
    NetCDF fields."""
    init = dataset["forecast_reference_time"].values
    reference = f"{np.datetime_as_string(init, unit='s').replace('T', ' ')}"
    encoding: dict[str, dict[str, Any]] = {
        "lead_time": {"units": "minutes", "dtype": "int32"},
        "time": {"units": f"seconds since {reference}", "calendar": "proleptic_gregorian", "dtype": "int64"},
        "forecast_reference_time": {"units": "seconds since 1970-01-01 00:00:00", "dtype": "int64"},
    }
    if kind == "netcdf":
        for name, variable in dataset.data_vars.items():
            if variable.ndim >= 2:
                encoding[name] = {"zlib": True, "complevel": 4}
    return encoding


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
