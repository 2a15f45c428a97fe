"""8-bit grey-level frames (HKO-7 and Shanghai PNGs, Shanghai HDF5): reading and the reserved fill value.

These archives use all 256 grey levels for data and have no "missing" code, but a radar store needs one raw
value as ``_FillValue`` (missing frames are written as it, and readers decode it to NaN). We reserve 255 and
store source pixels of 255 — the top of the scale, saturated echo — as 254; converters report how many pixels
this touched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Raw value meaning "missing" in stores converted from 8-bit grey levels.
GREY_FILL = 255


class FrameError(ValueError):
    """A source frame cannot be used; the message is the reason recorded in the conversion report."""


def read_grey_png(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read one 8-bit greyscale PNG.

    Args:
        path: the PNG file.
        shape: expected (H, W), or None to accept any size.

    Returns:
        (H, W) uint8 grey levels 0–255.

    Raises:
        FrameError: if the file is truncated or not an image, is not 8-bit greyscale (mode "L"), or has
            another shape.
    """
    try:
        with Image.open(path) as image:
            image.load()
            mode, pixels = image.mode, np.asarray(image)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise FrameError(f"unreadable PNG ({type(err).__name__}: {err})") from err
    if mode != "L":
        raise FrameError(f"PNG mode is {mode!r}, expected 8-bit greyscale 'L'")
    if shape is not None and pixels.shape != tuple(shape):
        raise FrameError(f"frame shape {pixels.shape}, expected {tuple(shape)}")
    return pixels.astype(np.uint8, copy=False)


def reserve_fill(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """Store grey level 255 as 254 so that 255 can mean "missing".

    Args:
        frames: (..., H, W) uint8 grey levels.

    Returns:
        The frames with 255 replaced by 254 (a copy only when something changed), and how many pixels changed.
    """
    saturated = frames == GREY_FILL
    count = int(saturated.sum())
    if count:
        frames = np.where(saturated, np.uint8(GREY_FILL - 1), frames)
    return frames, count


def saturation_note(count: int) -> str:
    """Report text for :func:`reserve_fill`."""
    return f"{count} pixel(s) of grey level 255 stored as 254 (255 is the store's fill value)"
