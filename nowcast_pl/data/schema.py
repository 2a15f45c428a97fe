"""The radar-store schema shared by every data source, and its validator.

A radar store is a Zarr (format 3) group holding one radar product on a fixed grid as a time series of
frames grouped into *events* (contiguous sequences). The full specification, with examples, is in
``docs/data-format.md``; this module is its executable form. Frames keep the archive's raw integer
encoding; CF attributes (``scale_factor``, ``add_offset``, ``_FillValue``, ``units``) map them to physical
units, so ``xarray.open_zarr`` decodes a store without any nowcast_pl code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SCHEMA_VERSION = "nowcast_pl-radar-store/1"
TIME_UNITS = "seconds since 1970-01-01 00:00:00"
FRAME_DTYPES = ("uint8", "int8", "uint16", "int16", "int32")
QUANTITIES = ("reflectivity", "vil", "rain_rate", "rain_accumulation", "grey_level")

REQUIRED_GROUP_ATTRS = {
    "schema": str,
    "title": str,
    "source": str,
    "licence": str,
    "citation": str,
    "time_step_seconds": int,
    "complete": bool,
    "n_frames_committed": int,
    "n_events_committed": int,
}
REQUIRED_FRAME_ATTRS = {
    "units": str,
    "quantity": str,
    "long_name": str,
    "scale_factor": (int, float),
    "add_offset": (int, float),
    "_FillValue": int,
}
TIME_ARRAYS = ("frames", "time", "event", "frame_valid")
EVENT_ARRAYS = ("event_name", "event_time")


class StoreValidationError(ValueError):
    """A store does not follow the radar-store schema; the message names the store and the field."""


@dataclass(frozen=True)
class FrameEncoding:
    """How raw frame values encode a physical quantity: ``physical = raw * scale_factor + add_offset``.

    Args:
        dtype: raw integer dtype, one of ``FRAME_DTYPES``.
        units: physical units after decoding, e.g. ``"dBZ"``, ``"mm h-1"``, ``"mm"``, ``"kg m-2"``, ``"1"``.
        quantity: one of ``QUANTITIES``.
        long_name: human-readable description of the product.
        fill_value: raw value meaning "missing" (outside coverage or no data).
        scale_factor: multiplier from raw to physical units.
        add_offset: offset from raw to physical units.
        comment: anything a user needs to know about the encoding (e.g. a non-linear formula).
    """

    dtype: str
    units: str
    quantity: str
    long_name: str
    fill_value: int
    scale_factor: float = 1.0
    add_offset: float = 0.0
    comment: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in FRAME_DTYPES:
            raise ValueError(f"FrameEncoding.dtype={self.dtype!r} is not one of {FRAME_DTYPES}")
        if self.quantity not in QUANTITIES:
            raise ValueError(f"FrameEncoding.quantity={self.quantity!r} is not one of {QUANTITIES}")
        info = np.iinfo(self.dtype)
        if not info.min <= self.fill_value <= info.max:
            raise ValueError(f"FrameEncoding.fill_value={self.fill_value} does not fit dtype {self.dtype}")
        if self.scale_factor == 0:
            raise ValueError("FrameEncoding.scale_factor must be non-zero")

    def attrs(self) -> dict[str, Any]:
        """CF attributes stored on the ``frames`` array."""
        out = {
            "units": self.units,
            "quantity": self.quantity,
            "long_name": self.long_name,
            "scale_factor": float(self.scale_factor),
            "add_offset": float(self.add_offset),
            "_FillValue": int(self.fill_value),
        }
        if self.comment:
            out["comment"] = self.comment
        return out

    @classmethod
    def from_attrs(cls, dtype: str, attrs: dict[str, Any]) -> FrameEncoding:
        return cls(
            dtype=dtype,
            units=attrs["units"],
            quantity=attrs["quantity"],
            long_name=attrs["long_name"],
            fill_value=int(attrs["_FillValue"]),
            scale_factor=float(attrs["scale_factor"]),
            add_offset=float(attrs["add_offset"]),
            comment=attrs.get("comment", ""),
        )

    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Raw values → float32 physical values, NaN where ``raw == fill_value``."""
        out = raw.astype(np.float32) * np.float32(self.scale_factor) + np.float32(self.add_offset)
        out[raw == self.fill_value] = np.nan
        return out

    def encode(self, physical: np.ndarray) -> np.ndarray:
        """Physical values → raw integers (rounded), ``fill_value`` where NaN.

        Raises:
            ValueError: if a finite value falls outside the dtype's range (it would wrap around).
        """
        raw = np.round((np.asarray(physical, dtype=np.float64) - self.add_offset) / self.scale_factor)
        finite = np.isfinite(raw)
        info = np.iinfo(self.dtype)
        if finite.any() and (raw[finite].min() < info.min or raw[finite].max() > info.max):
            raise ValueError(
                f"values {np.nanmin(physical):.4g}..{np.nanmax(physical):.4g} {self.units} do not fit "
                f"{self.dtype} with scale_factor={self.scale_factor}, add_offset={self.add_offset}; "
                "choose a wider dtype or another scale"
            )
        out = np.where(finite, raw, self.fill_value).astype(self.dtype)
        return out


@dataclass(frozen=True)
class StoreMetadata:
    """Dataset-level attributes of a store.

    Args:
        title: short name of the dataset, e.g. ``"SEVIR VIL"``.
        source: where the data came from (archive, institution, product).
        licence: licence or access terms of the source data.
        citation: how to cite the source data.
        time_step_seconds: nominal interval between frames (s).
        pixel_size_m: grid spacing (m), or None where the source does not state it.
        projection: PROJ string or WKT of the grid, or "" if unknown.
        extra: further source-specific attributes (JSON-serialisable).
    """

    title: str
    source: str
    licence: str
    citation: str
    time_step_seconds: int
    pixel_size_m: float | None = None
    projection: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if int(self.time_step_seconds) <= 0:
            raise ValueError(f"StoreMetadata.time_step_seconds must be positive, got {self.time_step_seconds}")

    def attrs(self) -> dict[str, Any]:
        out = asdict(self)
        extra = out.pop("extra")
        out["time_step_seconds"] = int(self.time_step_seconds)
        return {**extra, **out, "schema": SCHEMA_VERSION}


def _fail(path: str, message: str) -> StoreValidationError:
    return StoreValidationError(f"{path}: {message}")


def _check_attrs(path: str, where: str, attrs: dict[str, Any], required: dict[str, Any]) -> None:
    for key, kind in required.items():
        if key not in attrs:
            raise _fail(path, f"{where} attribute '{key}' is missing")
        value = attrs[key]
        bad_bool = kind is int and isinstance(value, bool)
        if bad_bool or not isinstance(value, kind):
            raise _fail(path, f"{where} attribute '{key}' must be {kind}, got {value!r}")


def validate_group(group: Any, path: str, require_complete: bool = True) -> None:
    """Check an opened Zarr group against the schema.

    Args:
        group: a ``zarr.Group`` opened read-only.
        path: store path, used in error messages.
        require_complete: refuse a store not yet marked complete (False: check a finished conversion before
            it is marked).

    Raises:
        StoreValidationError: naming the first missing or wrong field and how to fix it.
    """
    attrs = dict(group.attrs)
    if attrs.get("schema") != SCHEMA_VERSION:
        raise _fail(
            path,
            f"attribute 'schema' is {attrs.get('schema')!r}, expected {SCHEMA_VERSION!r}; "
            "is this a store written by nowcast-prep / nowcast_pl.data.RadarStoreWriter?",
        )
    _check_attrs(path, "group", attrs, REQUIRED_GROUP_ATTRS)
    if require_complete and not attrs["complete"]:
        raise _fail(
            path,
            "store is incomplete (attribute 'complete' is false): its conversion was interrupted; "
            "rerun the same conversion command to finish it",
        )
    if attrs["time_step_seconds"] <= 0:
        raise _fail(path, "attribute 'time_step_seconds' must be positive")
    members = set(group.array_keys())
    for name in TIME_ARRAYS + EVENT_ARRAYS:
        if name not in members:
            raise _fail(path, f"array '{name}' is missing")
    _validate_frames(group, path)
    _validate_lengths(group, path, attrs, members)
    _validate_events(group, path, attrs)


def _validate_frames(group: Any, path: str) -> None:
    frames = group["frames"]
    if frames.ndim != 3:
        raise _fail(path, f"array 'frames' must be 3-D (time, y, x), got shape {frames.shape}")
    if str(frames.dtype) not in FRAME_DTYPES:
        raise _fail(path, f"array 'frames' has dtype {frames.dtype}, expected one of {FRAME_DTYPES}")
    fattrs = dict(frames.attrs)
    _check_attrs(path, "frames", fattrs, REQUIRED_FRAME_ATTRS)
    if fattrs["quantity"] not in QUANTITIES:
        raise _fail(path, f"frames attribute 'quantity' is {fattrs['quantity']!r}, expected one of {QUANTITIES}")
    if int(frames.fill_value) != fattrs["_FillValue"]:
        raise _fail(path, "frames '_FillValue' attribute differs from the array's fill_value")
    dims = tuple(frames.metadata.dimension_names or ())
    if dims != ("time", "y", "x"):
        raise _fail(path, f"array 'frames' dimension_names are {dims}, expected ('time', 'y', 'x')")
    if group["time"].attrs.get("units") != TIME_UNITS:
        raise _fail(path, f"array 'time' attribute 'units' must be {TIME_UNITS!r}")


def _validate_lengths(group: Any, path: str, attrs: dict[str, Any], members: set[str]) -> None:
    n_frames, n_events = attrs["n_frames_committed"], attrs["n_events_committed"]
    for name in TIME_ARRAYS + (("pixel_valid",) if "pixel_valid" in members else ()):
        if group[name].shape[0] != n_frames:
            raise _fail(path, f"array '{name}' has {group[name].shape[0]} frames, n_frames_committed={n_frames}")
    for name in EVENT_ARRAYS:
        if group[name].shape[0] != n_events:
            raise _fail(path, f"array '{name}' has {group[name].shape[0]} events, n_events_committed={n_events}")
    frame_shape = tuple(group["frames"].shape[1:])
    for name in ("pixel_valid", "static_mask"):
        if name in members and tuple(group[name].shape[-2:]) != frame_shape:
            raise _fail(path, f"array '{name}' has grid {group[name].shape[-2:]}, frames have {frame_shape}")


def _validate_events(group: Any, path: str, attrs: dict[str, Any]) -> None:
    event = np.asarray(group["event"][:])
    time = np.asarray(group["time"][:])
    n_events = attrs["n_events_committed"]
    if event.size == 0:
        if n_events:
            raise _fail(path, "store has events but no frames")
        return
    starts = np.flatnonzero(np.diff(event)) + 1
    run_ids = event[np.concatenate([[0], starts])]
    if not np.array_equal(run_ids, np.arange(n_events)):
        raise _fail(path, "array 'event' must number events 0..n-1 in order, each as one contiguous run")
    same_event = event[1:] == event[:-1]
    if np.any(np.diff(time)[same_event] <= 0):
        raise _fail(path, "array 'time' must increase strictly within each event")
    names = [str(n) for n in np.asarray(group["event_name"][:]).tolist()]
    if len(set(names)) != len(names):
        raise _fail(path, "array 'event_name' holds duplicated names")
