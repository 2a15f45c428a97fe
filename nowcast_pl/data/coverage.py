"""Windows whose target frames hold no valid pixel, counted when a split is set up.

A pixel is valid where the data module would mark it valid at the store's grid: its frame is not missing
(``frame_valid``), its raw value is not the fill value (NaN once decoded), and the per-frame ``pixel_valid``
and ``static_mask`` allow it. The store holds no per-frame statistics, so the frames that the windows'
targets use are read once, in runs of consecutive wanted frames of at most ``READ_BLOCK`` frames (so a damaged
chunk is reported with the frames and events of the split that need it), and reduced to one bool per frame.
Resizing to the model grid can only remove valid pixels (:func:`nowcast_pl.data.transforms.resize_mask`),
so a window counted as empty here is empty on the model grid too.
"""

from __future__ import annotations

import numpy as np

from nowcast_pl.data.store import RadarStore

READ_BLOCK = 256


def frames_with_valid_pixel(store: RadarStore, wanted: np.ndarray) -> np.ndarray:
    """Which of the wanted frames hold at least one valid pixel.

    Args:
        store: the opened store.
        wanted: (N,) bool over the store's frames, True for the frames to inspect.

    Returns:
        (N,) bool, True where a wanted frame holds a valid pixel (False for frames not wanted).
    """
    wanted = wanted & store.frame_valid
    has_pixel = np.zeros(len(store), dtype=bool)
    for first, stop in _runs(np.flatnonzero(wanted)):
        valid = store.read_raw(first, stop) != store.encoding.fill_value
        pixel_valid = store.read_pixel_valid(first, stop)
        if pixel_valid is not None:
            valid &= pixel_valid
        if store.static_mask is not None:
            valid &= store.static_mask
        has_pixel[first:stop] = valid.any(axis=(1, 2))
    return has_pixel


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """``[first, stop)`` ranges covering the sorted frame ``indices`` exactly, each at most ``READ_BLOCK`` long."""
    runs = []
    for run in np.split(indices, np.flatnonzero(np.diff(indices) != 1) + 1):
        for first in range(int(run[0]), int(run[-1]) + 1, READ_BLOCK) if len(run) else ():
            runs.append((first, min(first + READ_BLOCK, int(run[-1]) + 1)))
    return runs


def windows_without_valid_target(store: RadarStore, starts: np.ndarray, *, in_frames: int,
                                 out_frames: int) -> np.ndarray:
    """(n_windows,) bool, True for the windows none of whose ``out_frames`` target frames has a valid pixel.

    Args:
        store: the opened store.
        starts: (n_windows,) int64 first-frame indices of the windows.
        in_frames: observed frames per window (the targets follow them).
        out_frames: target frames per window.
    """
    targets = starts[:, None] + in_frames + np.arange(out_frames)
    wanted = np.zeros(len(store), dtype=bool)
    wanted[targets.ravel()] = True
    return ~frames_with_valid_pixel(store, wanted)[targets].any(axis=1)
