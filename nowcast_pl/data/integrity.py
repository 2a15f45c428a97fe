"""Damaged radar stores: one-line errors naming the store, array and event, and a check that reads every chunk.

Zarr reports a damaged file in its own terms (``Stored and computed checksum do not match``, a
``UnicodeDecodeError`` for a garbled ``zarr.json``, a Zstd error) without naming the store or what the bytes
held. :func:`reading` turns any such error into a :class:`DamagedStoreError` that does; :func:`check_store`
(``nowcast-prep validate STORE``) reads every chunk of a store and lists each damaged event with its arrays
and frame indices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from nowcast_pl.data.schema import StoreValidationError, validate_group

FRAME_ARRAYS = ("frames", "pixel_valid")


class DamagedStoreError(StoreValidationError):
    """Bytes of a store cannot be read; the message names the store, the array and the events concerned."""


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


@contextmanager
def reading(path: str | Path, what: str) -> Iterator[None]:
    """Re-raise any error of reading ``what`` (e.g. ``"array 'frames' frames 0-11 (event 'a')"``) as a
    :class:`DamagedStoreError` naming the store; schema errors and a missing store pass unchanged."""
    try:
        yield
    except (StoreValidationError, FileNotFoundError, MemoryError):
        raise
    except Exception as error:
        raise DamagedStoreError(
            f"{path}: {what} cannot be read ({_one_line(error)}); the store is damaged: "
            f"`nowcast-prep validate {path}` lists every damaged event; reconvert it (nowcast-prep ... --overwrite)"
        ) from error


def damaged_metadata(path: str | Path) -> list[str]:
    """The ``zarr.json`` files of the store (group and arrays) that are not readable JSON, with the error."""
    path = Path(path)
    found = []
    for meta in [m for m in [path / "zarr.json", *sorted(path.glob("*/zarr.json"))] if m.is_file()]:
        try:
            json.loads(meta.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as error:
            found.append(f"{meta} ({_one_line(error)})")
    return found


def check_metadata(path: str | Path) -> None:
    """Raise a :class:`DamagedStoreError` naming the first damaged ``zarr.json`` of the store, if any."""
    damaged = damaged_metadata(path)
    if damaged:
        raise DamagedStoreError(f"{path}: damaged metadata file {damaged[0]}; the store cannot be opened: "
                                "reconvert it (nowcast-prep ... --overwrite)")


def check_store(path: str | Path) -> tuple[list[str], dict[str, int]]:
    """Read every chunk of a radar store and describe each damage found.

    Args:
        path: store directory.

    Returns:
        One line per problem (a damaged ``zarr.json``, a schema error, an unreadable index array, or a damaged
        event with its array and frame indices), empty for a sound store; and counts of events and frames.

    Raises:
        FileNotFoundError: if there is no store at ``path``.
    """
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"no radar store at {path}: expected a Zarr directory containing zarr.json")
    problems = [f"{path}: damaged metadata file {meta}" for meta in damaged_metadata(path)]
    if problems:
        return problems, {}
    try:
        group = zarr.open_group(str(path), mode="r", zarr_format=3, use_consolidated=False)
        members = set(group.array_keys())
    except Exception as error:  # metadata that parses but zarr cannot use
        return [f"{path}: the store's metadata cannot be read ({_one_line(error)})"], {}
    index = {}
    for name in sorted(members - set(FRAME_ARRAYS)):
        try:
            index[name] = np.asarray(group[name][:])
        except Exception as error:
            problems.append(f"{path}: array '{name}' cannot be read ({_one_line(error)})")
    if not problems:
        try:
            validate_group(group, str(path))
        except StoreValidationError as error:
            problems.append(str(error))
    for name in [n for n in FRAME_ARRAYS if n in members]:
        problems += _damaged_events(path, group[name], name, index)
    frames = int(group["frames"].shape[0]) if "frames" in members else 0
    return problems, {"events": len(index.get("event_name", ())), "frames": frames}


def _damaged_frames(array: Any, check_fill: np.ndarray | None) -> dict[int, str]:
    """``{frame index: reason}`` of the frames of a (T, H, W) array that cannot be read, shard by shard.

    ``check_fill`` (T,) bool marks frames that must not read as entirely the fill value: a valid frame that
    does has lost its chunk (zarr reads a missing chunk as the fill value).
    """
    step = (array.shards or array.chunks)[0]
    bad: dict[int, str] = {}
    for start in range(0, array.shape[0], step):
        stop = min(start + step, array.shape[0])
        try:
            block = array[start:stop]
        except Exception:
            for k in range(start, stop):
                try:
                    array[k]
                except Exception as error:
                    bad[k] = _one_line(error)
            continue
        if check_fill is not None:
            lost = (block == array.fill_value).all(axis=(1, 2)) & check_fill[start:stop]
            for k in np.flatnonzero(lost):
                bad[start + int(k)] = "a valid frame reads as entirely the fill value (its chunk is missing)"
    return bad


def _damaged_events(path: Path, array: Any, name: str, index: dict[str, np.ndarray]) -> list[str]:
    """One line per event with damaged frames in ``array``."""
    n_frames = array.shape[0]
    valid = index.get("frame_valid")
    check_fill = valid.astype(bool) if name == "frames" and valid is not None and valid.size == n_frames else None
    bad = _damaged_frames(array, check_fill)
    if not bad:
        return []
    frames = np.array(sorted(bad))
    event = index.get("event")
    event = event if event is not None and event.size == n_frames else None
    names = [str(n) for n in index["event_name"].tolist()] if "event_name" in index else None
    if event is None:
        return [f"{path}: array '{name}' frames {_ranges(frames)} (events unknown: array 'event' is unusable) "
                f"cannot be read ({bad[int(frames[0])]})"]
    lines = []
    for k in np.unique(event[frames]):
        mine = frames[event[frames] == k]
        first = int(np.flatnonzero(event == k)[0])
        label = f"event '{names[k]}' (#{k})" if names is not None and 0 <= k < len(names) else f"event #{k}"
        lines.append(f"{path}: {label}: array '{name}' frames {_ranges(mine)} (frames {_ranges(mine - first)} "
                     f"of the event) cannot be read ({bad[int(mine[0])]})")
    return lines


def _ranges(values: np.ndarray) -> str:
    """``"3-5, 9"`` for sorted integers 3, 4, 5, 9."""
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    runs = np.split(values, breaks)
    return ", ".join(f"{r[0]}-{r[-1]}" if r.size > 1 else f"{r[0]}" for r in runs)
