"""Writing and reading radar stores (schema in :mod:`nowcast_pl.data.schema`).

Writes are resumable and atomic at the granularity of an event: :class:`RadarStoreWriter` appends one whole
event at a time and only then advances the commit counters in the group attributes. Zarr's local store
replaces every file atomically, so a killed writer leaves the committed prefix intact; the next writer
opened on the same path truncates any uncommitted tail and carries on. A store is marked ``complete`` only
by :meth:`RadarStoreWriter.finalize`, and the validator rejects incomplete stores.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from nowcast_pl.data.destination import check_destination, remove_store
from nowcast_pl.data.integrity import check_metadata, reading
from nowcast_pl.data.schema import (
    EVENT_ARRAYS,
    TIME_ARRAYS,
    TIME_UNITS,
    FrameEncoding,
    StoreMetadata,
    StoreValidationError,
    validate_group,
)

DEFAULT_SHARD_FRAMES = 64
_INDEX_CHUNK = 65536


def to_epoch_seconds(times: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Datetimes (numpy datetime64, pandas, or python datetime, naive = UTC) → int64 epoch seconds."""
    values = np.asarray(times, dtype="datetime64[s]")
    return values.astype(np.int64)


def open_group(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open a Zarr group, turning "no such store" into an error that names the path."""
    path = Path(path)
    if mode == "r" and not (path / "zarr.json").exists():
        raise FileNotFoundError(
            f"no radar store at {path}: expected a Zarr directory containing zarr.json; "
            "create one with `nowcast-prep` (see docs/datasets.md) or `nowcast-prep synthetic`"
        )
    # The arrays' own metadata, not the consolidated copy (for xarray), which an edit of a finished store
    # would leave stale: the validator must see what is on disk.
    return zarr.open_group(str(path), mode=mode, zarr_format=3, use_consolidated=False)


def consolidate(path: str | Path) -> None:
    """Write the group's consolidated metadata, so ``xarray.open_zarr`` opens it in one read, without warning.

    Call it once the arrays' shapes and attributes are final: later metadata changes are not reflected.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(path), zarr_format=3)


@dataclass(frozen=True)
class StoreLayout:
    """On-disk layout of the time-indexed arrays.

    Args:
        shard_frames: frames per shard file. Chunks are always one frame, so a window read touches only
            the frames it needs; shards bound the number of files (see ``benchmarks/store_layout.py``).
        zstd_level: Zstandard compression level of each chunk (each chunk also carries Zstd's checksum).
    """

    shard_frames: int = DEFAULT_SHARD_FRAMES
    zstd_level: int = 3


class RadarStoreWriter:
    """Create, or resume, a radar store and append whole events to it.

    Use as a context manager; the store is finalised (marked complete) on a clean exit only::

        with RadarStoreWriter(path, frame_shape=(H, W), encoding=enc, metadata=meta) as writer:
            for name, times, frames in events:
                if not writer.has_event(name):
                    writer.append_event(name, times, frames)

    Args:
        path: store directory (``*.zarr``).
        frame_shape: (H, W) of every frame.
        encoding: raw encoding of the frames.
        metadata: dataset attributes.
        static_mask: optional (H, W) bool, True where pixels are usable for the whole archive.
        pixel_masks: store a per-frame (T, H, W) bool ``pixel_valid`` array (e.g. HKO-7 ``.mask`` files).
        coords: optional ``{"y": array, "x": array}`` of projected coordinates (m), with attributes.
        layout: chunking and compression.
        overwrite: delete an existing store at ``path`` first (only a radar store or an empty folder).

    Raises:
        FileExistsError: if a complete store exists at ``path`` and ``overwrite`` is False, or ``path`` is
            neither absent, an empty folder nor a radar store (it is then left untouched).
        StoreValidationError: if an incomplete store exists but was started with other settings.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        frame_shape: tuple[int, int],
        encoding: FrameEncoding,
        metadata: StoreMetadata,
        static_mask: np.ndarray | None = None,
        pixel_masks: bool = False,
        coords: dict[str, np.ndarray] | None = None,
        layout: StoreLayout = StoreLayout(),
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.encoding = encoding
        self.pixel_masks = pixel_masks
        check_destination(self.path)
        if overwrite:
            remove_store(self.path)
        if (self.path / "zarr.json").exists():
            self.group = self._resume(metadata)
        else:
            self.group = self._create(metadata, static_mask, coords, layout)
        names = self.group["event_name"][:]
        self._names = {str(n) for n in np.asarray(names).tolist()}

    def __enter__(self) -> RadarStoreWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.finalize()

    @property
    def n_frames(self) -> int:
        return int(self.group.attrs["n_frames_committed"])

    @property
    def n_events(self) -> int:
        return int(self.group.attrs["n_events_committed"])

    def has_event(self, name: str) -> bool:
        """Whether an event of this name is already committed (used to skip work on resume)."""
        return name in self._names

    def _create(self, metadata, static_mask, coords, layout) -> zarr.Group:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(str(self.path), mode="w-", zarr_format=3)
        h, w = self.frame_shape
        # Zstd's content checksum: a chunk whose bytes changed fails to decode instead of reading as other values.
        codecs = [ZstdCodec(level=layout.zstd_level, checksum=True)]
        frame_kw = dict(chunks=(1, h, w), shards=(layout.shard_frames, h, w), compressors=codecs)
        index_kw = dict(chunks=(_INDEX_CHUNK,), compressors=codecs)
        enc = self.encoding
        group.create_array(
            "frames", shape=(0, h, w), dtype=enc.dtype, fill_value=enc.fill_value,
            dimension_names=["time", "y", "x"], attributes=enc.attrs(), **frame_kw,
        )
        time_attrs = {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "standard_name": "time"}
        group.create_array("time", shape=(0,), dtype="int64", fill_value=0, dimension_names=["time"],
                           attributes=time_attrs, **index_kw)
        group.create_array("event", shape=(0,), dtype="int32", fill_value=-1, dimension_names=["time"],
                           attributes={"long_name": "index into event_name of each frame"}, **index_kw)
        group.create_array("frame_valid", shape=(0,), dtype="bool", fill_value=False, dimension_names=["time"],
                           attributes={"long_name": "false where the frame is missing (stored as _FillValue)"},
                           **index_kw)
        group.create_array("event_name", shape=(0,), dtype=str, dimension_names=["event"],
                           attributes={"long_name": "identifier of the event in the source archive"},
                           chunks=(_INDEX_CHUNK,))
        group.create_array("event_time", shape=(0,), dtype="int64", fill_value=0, dimension_names=["event"],
                           attributes={**time_attrs, "long_name": "reference time of the event"}, **index_kw)
        if self.pixel_masks:
            group.create_array("pixel_valid", shape=(0, h, w), dtype="bool", fill_value=False,
                               dimension_names=["time", "y", "x"],
                               attributes={"long_name": "true where the pixel is usable in this frame"},
                               **frame_kw)
        if static_mask is not None:
            mask = np.asarray(static_mask, dtype=bool)
            self._check_grid("static_mask", mask.shape)
            arr = group.create_array("static_mask", shape=mask.shape, dtype="bool", fill_value=False,
                                     dimension_names=["y", "x"],
                                     attributes={"long_name": "true where the pixel is usable in every frame"})
            arr[:] = mask
        for dim, values in (coords or {}).items():
            values = np.asarray(values, dtype=np.float64)
            arr = group.create_array(dim, shape=values.shape, dtype="float64", fill_value=0.0,
                                     dimension_names=[dim], attributes={"units": "m"})
            arr[:] = values
        group.attrs.update({**metadata.attrs(), "complete": False, "n_frames_committed": 0,
                            "n_events_committed": 0})
        return group

    def _resume(self, metadata: StoreMetadata) -> zarr.Group:
        group = zarr.open_group(str(self.path), mode="r+", zarr_format=3, use_consolidated=False)
        attrs = dict(group.attrs)
        if attrs.get("complete"):
            raise FileExistsError(
                f"{self.path} is already a complete store; pass overwrite=True (--overwrite) to rebuild it"
            )
        frames = group["frames"]
        found = (tuple(frames.shape[1:]), str(frames.dtype), dict(frames.attrs), attrs.get("title"))
        wanted = (self.frame_shape, self.encoding.dtype, self.encoding.attrs(), metadata.title)
        if found != wanted:
            raise StoreValidationError(
                f"{self.path}: an unfinished store with other settings exists (grid/dtype/encoding/title "
                f"{found} vs {wanted}); delete it or pass overwrite=True (--overwrite)"
            )
        n_frames, n_events = attrs["n_frames_committed"], attrs["n_events_committed"]
        for name in TIME_ARRAYS + (("pixel_valid",) if self.pixel_masks else ()):
            group[name].resize((n_frames, *group[name].shape[1:]))
        for name in EVENT_ARRAYS:
            group[name].resize((n_events,))
        return group

    def _check_grid(self, what: str, shape: tuple[int, ...]) -> None:
        if tuple(shape[-2:]) != self.frame_shape:
            raise ValueError(f"{what} has grid {tuple(shape[-2:])}, the store's frames are {self.frame_shape}")

    def append_event(
        self,
        name: str,
        times: Sequence[Any] | np.ndarray,
        frames: np.ndarray,
        *,
        frame_valid: np.ndarray | None = None,
        pixel_valid: np.ndarray | None = None,
        event_time: Any | None = None,
    ) -> None:
        """Append one event and commit it.

        Args:
            name: unique event identifier from the source archive.
            times: (T,) frame times, strictly increasing, UTC.
            frames: (T, H, W) raw values of ``encoding.dtype`` (other integer dtypes are accepted when every
                value fits). Missing frames are rows whose ``frame_valid`` is False; their values are
                replaced by the fill value.
            frame_valid: (T,) bool, default all True.
            pixel_valid: (T, H, W) bool, required iff the store was created with ``pixel_masks=True``.
            event_time: reference time of the event, default its first frame.

        Raises:
            ValueError: on a duplicate name, bad shapes, non-increasing times, values that do not fit.
        """
        if name in self._names:
            raise ValueError(f"event {name!r} is already in {self.path}")
        seconds = to_epoch_seconds(times)
        frames = self._checked_frames(name, frames, seconds.size)
        if seconds.size > 1 and np.any(np.diff(seconds) <= 0):
            raise ValueError(f"event {name!r}: times must increase strictly")
        valid = np.ones(seconds.size, bool) if frame_valid is None else np.asarray(frame_valid, bool)
        if valid.shape != seconds.shape:
            raise ValueError(f"event {name!r}: frame_valid has shape {valid.shape}, expected {seconds.shape}")
        frames = frames.copy() if not valid.all() else frames
        frames[~valid] = self.encoding.fill_value
        start, stop = self.n_frames, self.n_frames + seconds.size
        updates = {"frames": frames, "time": seconds, "frame_valid": valid,
                   "event": np.full(seconds.size, self.n_events, dtype=np.int32)}
        if self.pixel_masks:
            if pixel_valid is None or np.shape(pixel_valid) != frames.shape:
                raise ValueError(f"event {name!r}: pixel_valid of shape {frames.shape} is required")
            updates["pixel_valid"] = np.asarray(pixel_valid, bool) & valid[:, None, None]
        for key, values in updates.items():
            arr = self.group[key]
            arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = values
        ref = seconds[0] if event_time is None else to_epoch_seconds([event_time])[0]
        for key, value in (("event_name", np.array([name], dtype=object)), ("event_time", np.array([ref]))):
            arr = self.group[key]
            arr.resize((self.n_events + 1,))
            arr[self.n_events:] = value
        self.group.attrs.update({"n_frames_committed": stop, "n_events_committed": self.n_events + 1})
        self._names.add(name)

    def _checked_frames(self, name: str, frames: np.ndarray, n_times: int) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[0] != n_times:
            raise ValueError(f"event {name!r}: frames have shape {frames.shape}, expected ({n_times}, H, W)")
        self._check_grid(f"event {name!r} frames", frames.shape)
        if not np.issubdtype(frames.dtype, np.integer):
            raise ValueError(f"event {name!r}: frames must be raw integers, got {frames.dtype}; "
                             "use FrameEncoding.encode() for physical values")
        if frames.dtype != np.dtype(self.encoding.dtype):
            info = np.iinfo(self.encoding.dtype)
            if frames.size and (frames.min() < info.min or frames.max() > info.max):
                raise ValueError(f"event {name!r}: values {frames.min()}..{frames.max()} do not fit "
                                 f"{self.encoding.dtype}")
            frames = frames.astype(self.encoding.dtype)
        return frames

    def finalize(self, **extra_attrs: Any) -> None:
        """Check the store against the schema, consolidate its metadata, then mark it complete (optionally
        recording extra attributes such as a conversion report) in one write of its ``zarr.json``, so a kill
        never leaves a complete store without consolidated metadata, and a store that fails the checks is never
        marked complete."""
        validate_group(open_group(self.path), str(self.path), require_complete=False)
        consolidate(self.path)
        # Opened with its consolidated metadata, which the attribute update then writes back unchanged.
        group = zarr.open_group(str(self.path), mode="r+", zarr_format=3)
        group.attrs.update({**extra_attrs, "complete": True})


class RadarStore:
    """Read-only, lazily opened view of a validated radar store.

    Only the path and small 1-D indices are pickled, so the object is cheap to send to DataLoader workers;
    each process opens the Zarr arrays on first access.

    Args:
        path: store directory.

    Raises:
        FileNotFoundError: if there is no store at ``path``.
        StoreValidationError: if the store does not follow the schema.
        DamagedStoreError: naming the file or array, if the store's metadata or index arrays are damaged.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_metadata(self.path)
        group = open_group(self.path)
        with reading(self.path, "the store's metadata"):
            members = set(group.array_keys())
        # Read the 1-D arrays before validating, which reads some of them, so a damaged one is named.
        index = {name: self._whole(group, name) for name in (*TIME_ARRAYS[1:], *EVENT_ARRAYS, "static_mask")
                 if name in members}
        with reading(self.path, "the store's metadata"):
            validate_group(group, str(self.path))
        self.attrs = dict(group.attrs)
        self.encoding = FrameEncoding.from_attrs(str(group["frames"].dtype), dict(group["frames"].attrs))
        self.frame_shape = tuple(group["frames"].shape[1:])
        self.times = index["time"].astype("datetime64[s]")
        self.event = index["event"]
        self.frame_valid = index["frame_valid"]
        self.event_names = np.array([str(n) for n in index["event_name"].tolist()], dtype=object)
        self.event_times = index["event_time"].astype("datetime64[s]")
        self.has_pixel_masks = "pixel_valid" in members
        self.static_mask = index.get("static_mask")

    def _whole(self, group: zarr.Group, name: str) -> np.ndarray:
        """All of a 1-D or 2-D array, read at opening; a damaged one raises a :class:`DamagedStoreError`."""
        with reading(self.path, f"array '{name}'"):
            return np.asarray(group[name][:])

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_arrays"}

    @property
    def time_step(self) -> np.timedelta64:
        return np.timedelta64(int(self.attrs["time_step_seconds"]), "s")

    @cached_property
    def _arrays(self) -> dict[str, zarr.Array]:
        group = open_group(self.path)
        names = ["frames"] + (["pixel_valid"] if self.has_pixel_masks else [])
        return {name: group[name] for name in names}

    def __len__(self) -> int:
        return int(self.times.size)

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` of a (T, H, W) array; damaged bytes raise a :class:`DamagedStoreError`
        naming the array, the frames and their events."""
        events = ", ".join(f"'{n}'" for n in self.event_names[np.unique(self.event[start:stop])])
        with reading(self.path, f"array '{name}' frames {start}-{stop - 1} (event {events})"):
            return self._arrays[name][start:stop]

    def read_raw(self, start: int, stop: int) -> np.ndarray:
        """Raw frames ``[start, stop)`` as (T, H, W) of the store's integer dtype.

        Raises:
            DamagedStoreError: naming the store, array, frames and events, if their bytes are damaged.
        """
        return self._read("frames", start, stop)

    def read_pixel_valid(self, start: int, stop: int) -> np.ndarray | None:
        """Per-frame pixel masks ``[start, stop)`` (T, H, W) bool, or None if the store has none."""
        if not self.has_pixel_masks:
            return None
        return self._read("pixel_valid", start, stop)
