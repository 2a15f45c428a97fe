"""Overlapping tiles over a domain of any size, and the smooth weights that blend them.

A domain of ``H x W`` pixels is covered by tiles of the model's frame size ``h x w`` whose origins lie on a
regular grid of step ``h - overlap`` (rounded down to a multiple of the model's ``frame_multiple``, so that a
latent model's tiles share one latent grid). The last tile may reach past the domain: the domain is padded to
``padded`` (bottom and right, with zeros, the value of missing pixels in the data module) and cropped back.
A domain smaller than a tile is one padded tile.

Blending (as in overlapping-patch inference of image models): every tile's forecast is weighted by a
separable window that is 1 in the tile's centre and falls as a raised cosine, sin²(π (i + ½) / (2 overlap)),
over ``overlap`` pixels towards each edge; the domain forecast is the weighted sum divided by the summed
weights. Where two tiles overlap by exactly ``overlap`` pixels their ramps add to 1 (sin² + cos²).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of one domain lie.

    Attributes:
        domain: (H, W) pixels of the domain as given.
        padded: (H', W') >= domain: the domain padded so that the tiles cover it exactly.
        tile: (h, w) tile size (the model's frame size).
        overlap: (oy, ox) ramp width of the blending windows in pixels.
        origins_y, origins_x: top rows and left columns of the tiles; tile (i, j) is at
            (origins_y[i], origins_x[j]).
    """

    domain: tuple[int, int]
    padded: tuple[int, int]
    tile: tuple[int, int]
    overlap: tuple[int, int]
    origins_y: tuple[int, ...]
    origins_x: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.origins_y) * len(self.origins_x)

    def origins(self) -> Iterator[tuple[int, int]]:
        """(top, left) of every tile, row by row."""
        for top in self.origins_y:
            for left in self.origins_x:
                yield top, left

    def weights(self) -> np.ndarray:
        """(h, w) float64 blending window of a tile, in (0, 1]."""
        return np.outer(_ramp(self.tile[0], self.overlap[0]), _ramp(self.tile[1], self.overlap[1]))


def plan_tiles(domain: tuple[int, int], tile: tuple[int, int], *, overlap: int | tuple[int, int],
               multiple: int = 1) -> TileLayout:
    """Tiles of size ``tile`` covering ``domain`` with at least ``overlap`` pixels shared between neighbours.

    Args:
        domain: (H, W) of the grid to forecast, any size >= 1.
        tile: (h, w) the model's frame size, multiples of ``multiple``.
        overlap: pixels shared by neighbouring tiles (one int for both axes), in [0, tile).
        multiple: tile origins are multiples of this (the model's total downsampling, e.g. STLDM's VAE factor
            times its patch size), so every tile sees the same latent grid.

    Raises:
        ValueError: naming the argument, for a tile that is not a multiple of ``multiple`` or an overlap
            outside [0, tile).
    """
    overlaps = (overlap, overlap) if isinstance(overlap, int) else tuple(overlap)
    axes = [_plan_axis(n, t, o, multiple, name) for n, t, o, name in zip(domain, tile, overlaps, ("height", "width"),
                                                                         strict=True)]
    (padded_y, origins_y), (padded_x, origins_x) = axes
    return TileLayout(domain=tuple(domain), padded=(padded_y, padded_x), tile=tuple(tile), overlap=overlaps,
                      origins_y=origins_y, origins_x=origins_x)


def _plan_axis(size: int, tile: int, overlap: int, multiple: int, name: str) -> tuple[int, tuple[int, ...]]:
    if tile % multiple:
        raise ValueError(f"tile {name} {tile} is not a multiple of the model's frame multiple {multiple}")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile {name} {tile}), got {overlap}")
    if size <= tile:
        return tile, (0,)
    step = max(multiple, (tile - overlap) // multiple * multiple)
    count = -(-(size - tile) // step) + 1
    return tile + (count - 1) * step, tuple(i * step for i in range(count))


def _ramp(size: int, width: int) -> np.ndarray:
    """1-D window: sin²(π (i + ½) / (2 width)) over ``width`` pixels at both ends, 1 between."""
    window = np.ones(size)
    if width:
        ramp = np.sin(np.pi * (np.arange(width) + 0.5) / (2 * width)) ** 2
        window[:width] = ramp
        window[size - width:] = np.minimum(window[size - width:], ramp[::-1])
    return window


def crop_padded(frames: np.ndarray, top: int, left: int, size: tuple[int, int]) -> np.ndarray:
    """``frames[..., top:top+h, left:left+w]``, zero-filled where the window reaches past the frames.

    Args:
        frames: (..., H, W) array.
        top, left: window origin (>= 0).
        size: (h, w) window size.

    Returns: (..., h, w) array of ``frames``' dtype (a copy).
    """
    h, w = size
    out = np.zeros((*frames.shape[:-2], h, w), dtype=frames.dtype)
    part = frames[..., top:top + h, left:left + w]
    out[..., :part.shape[-2], :part.shape[-1]] = part
    return out
