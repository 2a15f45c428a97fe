"""Tiny radar stores for tests, written through the public writer API."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nowcast_pl.data import FrameEncoding, RadarStoreWriter, StoreMetadata

ENCODING = FrameEncoding(dtype="uint8", units="dBZ", quantity="reflectivity", long_name="test reflectivity",
                         fill_value=255, scale_factor=70 / 255, add_offset=-10.0)
METADATA = StoreMetadata(title="test store", source="tests", licence="CC0-1.0", citation="none",
                         time_step_seconds=300, pixel_size_m=1000.0)
STEP = np.timedelta64(5, "m")


def event_times(day: int, n: int, start_hour: int = 0) -> np.ndarray:
    """n frame times at 5-minute spacing on 2020-01-01 + day."""
    start = np.datetime64("2020-01-01T00:00") + np.timedelta64(day, "D") + np.timedelta64(start_hour, "h")
    return start + np.arange(n) * STEP


def moving_frames(rng: np.random.Generator, n: int, size: int, speed: int = 1) -> np.ndarray:
    """(n, size, size) uint8 frames of a random field shifted by ``speed`` px per frame along x."""
    base = rng.integers(0, 254, (size, size))
    return np.stack([np.roll(base, t * speed, axis=1) for t in range(n)]).astype(np.uint8)


def write_moving_store(path: Path, *, n_events: int = 6, frames: int = 12, size: int = 16, seed: int = 0,
                       missing: dict[int, list[int]] | None = None,
                       no_data: dict[int, list[int]] | None = None) -> Path:
    """A store of ``n_events`` one-day-apart events of ``frames`` moving frames each.

    ``missing`` maps an event number to the frame indices to mark missing; ``no_data`` to the frame indices
    that are present (``frame_valid``) but hold only the fill value (all NaN once decoded).
    """
    rng = np.random.default_rng(seed)
    with RadarStoreWriter(path, frame_shape=(size, size), encoding=ENCODING, metadata=METADATA,
                          overwrite=True) as writer:
        for e in range(n_events):
            valid = np.ones(frames, dtype=bool)
            valid[(missing or {}).get(e, [])] = False
            values = moving_frames(rng, frames, size)
            values[list((no_data or {}).get(e, []))] = ENCODING.fill_value
            writer.append_event(f"ev{e:03d}", event_times(e, frames), values, frame_valid=valid)
    return path
