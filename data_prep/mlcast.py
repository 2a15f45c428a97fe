"""``nowcast-prep mlcast``: an mlcast dataset (CF-convention Zarr, :mod:`nowcast_pl.data.mlcast`) → radar store.

The dataset's frames become events of one UTC day each (split where the time step breaks); within an event,
times absent between its first and last frame (the dataset's ``missing_times``) become missing frames. The
store keeps the dataset's projection (``crs_wkt``) and projected ``y``/``x`` in metres, so that
``RadarDataModule`` reads it as any other store: one code path for windows.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from data_prep.base import ConversionReport, Converter, EventData, EventRef, StoreSpec
from data_prep.errors import UsageError
from data_prep.units import encode_clipped, encoding_for_unit
from nowcast_pl.data.mlcast import ENCODING_ATTRIBUTE, LENGTH_UNITS, STANDARD_NAMES
from nowcast_pl.data.schema import FrameEncoding, StoreMetadata
from nowcast_pl.data.units import REFERENCE_UNITS, quantity_of

READ_FRAMES = 32


@dataclass(frozen=True)
class MlcastDataset:
    """What the converter needs of an mlcast dataset, checked on opening (:func:`describe`).

    Attributes:
        variable: the data variable, dims (time, y, x).
        quantity: ``reflectivity``, ``rain_rate`` or ``rain_accumulation``.
        factor: values × factor = the quantity's reference unit (dBZ, mm/h, mm).
        projection: WKT of the grid mapping.
        y, x: (H,), (W,) projected pixel centres in metres.
        times: (T,) datetime64[s], strictly increasing.
        step: the time step (s), the smallest interval between times.
    """

    variable: str
    quantity: str
    factor: float
    projection: str
    y: np.ndarray
    x: np.ndarray
    times: np.ndarray
    step: int


def describe(ds: xr.Dataset, path: Path, variable: str | None) -> MlcastDataset:
    """Check an opened mlcast dataset and describe it.

    Raises:
        UsageError: one line naming the dataset, the field and the fix.
    """
    name = _data_variable(ds, path, variable)
    array = ds[name]
    if array.ndim != 3 or array.dims[0] != "time":
        raise UsageError(f"{path}: variable '{name}' has dims {array.dims}; mlcast data variables are (time, y, x)")
    quantity, factor = _quantity(array, path)
    y, x = (_metres(ds, dim, path) for dim in array.dims[1:])
    times = ds["time"].values.astype("datetime64[s]")
    steps = np.diff(times.astype(np.int64))
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise UsageError(f"{path}: coordinate 'time' is not strictly increasing ({times[i]} then {times[i + 1]} at "
                         f"index {i}); sort the dataset and drop repeated times: "
                         "ds.sortby('time').drop_duplicates('time')")
    if steps.size == 0:
        raise UsageError(f"{path}: coordinate 'time' has {times.size} value(s); a radar store needs at least two "
                         "times to know its time step")
    return MlcastDataset(name, quantity, factor, _projection(ds, name, path), y, x, times, int(steps.min()))


def _data_variable(ds: xr.Dataset, path: Path, variable: str | None) -> str:
    mappings = {ds[v].attrs.get("grid_mapping") for v in ds.data_vars}
    names = [v for v in ds.data_vars if v not in mappings and "time" in ds[v].dims]
    if variable is not None:
        if variable not in names:
            raise UsageError(f"{path}: no data variable '{variable}' (--variable); it has {names}")
        return variable
    if len(names) != 1:
        raise UsageError(f"{path}: {len(names)} time-indexed data variables {names}; choose one with --variable")
    return names[0]


def _quantity(array: xr.DataArray, path: Path) -> tuple[str, float]:
    units = array.attrs.get("units")
    if units is None:
        raise UsageError(f"{path}: variable '{array.name}' has no 'units' attribute; add the CF units (dBZ, "
                         "kg m-2 h-1 or kg m-2)")
    try:
        quantity, factor = quantity_of(str(units))
    except ValueError:
        raise UsageError(f"{path}: variable '{array.name}' has units {units!r}, which measure none of reflectivity "
                         "(dBZ), rain rate (kg m-2 h-1, mm h-1) or accumulation (kg m-2, mm); fix its 'units' "
                         "attribute") from None
    expected = STANDARD_NAMES.get(str(array.attrs.get("standard_name", "")).lower(), quantity)
    if expected != quantity:
        raise UsageError(f"{path}: variable '{array.name}' has units {units!r} ({quantity}) but standard_name "
                         f"{array.attrs['standard_name']!r} ({expected}); fix its 'units' attribute "
                         f"(e.g. {REFERENCE_UNITS[expected]})")
    return quantity, factor


def _metres(ds: xr.Dataset, dim: str, path: Path) -> np.ndarray:
    if dim not in ds.coords:
        raise UsageError(f"{path}: dimension '{dim}' has no coordinate; mlcast datasets have projected x/y "
                         "coordinates (spec §3.1)")
    units = str(ds[dim].attrs.get("units", "")).strip().lower()
    if units not in LENGTH_UNITS:
        raise UsageError(f"{path}: coordinate '{dim}' has units {ds[dim].attrs.get('units')!r}; projected "
                         "coordinates are in m or km: fix its 'units' attribute")
    return ds[dim].values.astype(np.float64) * LENGTH_UNITS[units]


def _projection(ds: xr.Dataset, name: str, path: Path) -> str:
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    mapping = ds[name].attrs.get("grid_mapping")
    if mapping is None:
        raise UsageError(f"{path}: variable '{name}' has no 'grid_mapping' attribute; add grid_mapping='crs' "
                         "naming the CRS variable (CF §5.6, mlcast spec §4.5)")
    if mapping not in ds.variables:
        raise UsageError(f"{path}: variable '{name}' names grid_mapping '{mapping}', which is not in the dataset; "
                         "add that CRS variable or fix the attribute")
    attrs = ds[mapping].attrs
    try:
        crs = CRS.from_wkt(attrs["crs_wkt"]) if "crs_wkt" in attrs else CRS.from_cf(dict(attrs))
    except (CRSError, KeyError, ValueError) as error:
        raise UsageError(f"{path}: CRS variable '{mapping}' has neither a readable 'crs_wkt' nor CF grid-mapping "
                         f"attributes ({error}); add crs_wkt") from None
    return crs.to_wkt()


def event_runs(times: np.ndarray, step: int) -> list[tuple[int, int]]:
    """Index ranges ``[first, last]`` of the events: one UTC day each, split where a gap is not whole steps.

    Args:
        times: (T,) datetime64[s], strictly increasing.
        step: the time step (s).
    """
    if times.size == 0:
        return []
    seconds = times.astype(np.int64)
    day = times.astype("datetime64[D]")
    breaks = (day[1:] != day[:-1]) | (np.diff(seconds) % step != 0)
    starts = np.concatenate([[0], np.flatnonzero(breaks) + 1])
    ends = np.concatenate([starts[1:] - 1, [times.size - 1]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _has_consolidated_metadata(path: Path) -> bool:
    """Whether a Zarr group has consolidated metadata (format 2: ``.zmetadata``; format 3: in ``zarr.json``)."""
    if (path / ".zmetadata").is_file():
        return True
    meta = path / "zarr.json"
    return meta.is_file() and json.loads(meta.read_text()).get("consolidated_metadata") is not None


class MlcastConverter(Converter):
    """An mlcast dataset → radar store.

    Args:
        src: the dataset (a Zarr directory, format 2 or 3).
        variable: the data variable, needed only when the dataset has several.
        options: common runner options.
    """

    name = "mlcast"
    layout_help = (
        "an mlcast dataset (EUMETNET mlcast community, CF-convention Zarr; docs/mlcast.md): --src DATASET.zarr\n"
        "One data variable (time, y, x) in dBZ, a rain rate (kg m-2 h-1, mm h-1) or an accumulation (kg m-2, mm),\n"
        "NaN where there is no data, projected x/y coordinates and a grid_mapping CRS variable (crs_wkt).\n"
        "Events are UTC days; times missing between a day's first and last frame become missing frames."
    )

    def __init__(self, src: str | Path, *, variable: str | None = None, **options: Any) -> None:
        super().__init__(src, **options)
        self.variable = variable
        if not any((self.src / name).is_file() for name in ("zarr.json", ".zgroup")):
            raise UsageError(f"mlcast: {self.src} is not a Zarr dataset (no zarr.json nor .zgroup)")
        self.info = describe(self.dataset, self.src, variable)

    def content_options(self) -> dict[str, Any]:
        return {"variable": self.variable}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--variable", default=None,
                            help="the data variable to convert (only needed when the dataset has several)")

    @cached_property
    def dataset(self) -> xr.Dataset:
        """The dataset, opened lazily in each process (without dask)."""
        return xr.open_zarr(self.src, chunks=None, consolidated=_has_consolidated_metadata(self.src))

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "dataset"}

    @cached_property
    def encoding(self) -> FrameEncoding:
        """The store encoding: the one recorded by ``nowcast-prep export-mlcast``, else that of the unit."""
        info = self.info
        long_name = str(self.dataset[info.variable].attrs.get("long_name", info.variable))
        base = encoding_for_unit(REFERENCE_UNITS[info.quantity], long_name)
        recorded = self.dataset.attrs.get(ENCODING_ATTRIBUTE)
        return base if recorded is None else replace(base, **json.loads(recorded))

    def spec(self) -> StoreSpec:
        info, attrs = self.info, self.dataset.attrs
        dy, dx = (abs(float(a[1] - a[0])) if a.size > 1 else None for a in (info.y, info.x))
        metadata = StoreMetadata(
            title=str(attrs.get("title", attrs.get("mlcast_dataset_identifier", self.src.name))),
            source=f"mlcast dataset {attrs.get('mlcast_dataset_identifier', self.src.name)}, "
                   f"{attrs.get('mlcast_created_with', '')}".rstrip(", "),
            licence=str(attrs.get("license", "not stated")), citation=str(attrs.get("citation", "not stated")),
            time_step_seconds=info.step, pixel_size_m=dx if dx and dy and math.isclose(dx, dy, rel_tol=1e-3) else None,
            projection=info.projection)
        return StoreSpec(frame_shape=(info.y.size, info.x.size), encoding=self.encoding, metadata=metadata,
                         coords={"y": info.y, "x": info.x})

    def list_events(self, report: ConversionReport) -> list[EventRef]:
        times = self.info.times
        return [EventRef(name=f"{times[first].astype('datetime64[m]')}", files=(str(self.src),),
                         info={"first": first, "last": last}) for first, last in event_runs(times, self.info.step)]

    def read_event(self, ref: EventRef, report: ConversionReport) -> EventData:
        info, first, last = self.info, int(ref.info["first"]), int(ref.info["last"])
        times = info.times[first:last + 1]
        step = np.timedelta64(info.step, "s")
        slots = ((times - times[0]) // step).astype(np.int64)
        frames = np.full((int(slots[-1]) + 1, info.y.size, info.x.size), self.encoding.fill_value,
                         dtype=self.encoding.dtype)
        n_clipped = 0
        for start in range(0, times.size, READ_FRAMES):  # float frames a few at a time: memory ~ the raw event
            stop = min(start + READ_FRAMES, times.size)
            values = self.dataset[info.variable].isel(time=slice(first + start, first + stop)).values * info.factor
            raw, clipped = encode_clipped(values, self.encoding)
            frames[slots[start:stop]] = raw
            n_clipped += clipped
        if n_clipped:
            report.add(self.src, f"{n_clipped} values outside the encodable range were clipped", "note", ref.name)
        valid = np.zeros(frames.shape[0], dtype=bool)
        valid[slots] = True
        return EventData(name=ref.name, times=times[0] + np.arange(frames.shape[0]) * step, frames=frames,
                         frame_valid=valid)
