"""How visible tile borders are in a blended forecast.

A seam is a jump between neighbouring pixels where one tile's forecast starts or ends. The measure: the mean
absolute difference between horizontally or vertically neighbouring pixels across tile borders (the pixel
pairs a tile edge falls between, inside the domain), against the same mean over all other neighbouring pairs
(inside tiles). A ratio near 1 means the borders cannot be told from the field's own texture.
"""

from __future__ import annotations

import numpy as np

from nowcast_pl.forecasting.tiles import TileLayout


def border_positions(origins: tuple[int, ...], tile: int, size: int) -> np.ndarray:
    """Indices ``i`` in 1..size-1 with a tile edge between pixels ``i - 1`` and ``i`` (sorted, distinct)."""
    edges = {edge for origin in origins for edge in (origin, origin + tile)}
    return np.array(sorted(e for e in edges if 0 < e < size), dtype=int)


def seam_statistics(field: np.ndarray, layout: TileLayout) -> dict[str, float]:
    """Mean |neighbour difference| across tile borders and inside tiles, and their ratio.

    Args:
        field: (..., H, W) forecast on the layout's domain (e.g. (members, leads, H, W)); NaN pixels ignored.
        layout: the tiles that made it.

    Returns: ``{"border": ..., "inside": ..., "ratio": border / inside, "border_pairs": n, "inside_pairs": n}``.
    """
    height, width = layout.domain
    rows = border_positions(layout.origins_y, layout.tile[0], height)
    cols = border_positions(layout.origins_x, layout.tile[1], width)
    vertical = np.abs(np.diff(field, axis=-2))  # pair (i - 1, i) at index i - 1
    horizontal = np.abs(np.diff(field, axis=-1))
    row_border = np.zeros(height - 1, bool)
    row_border[rows - 1] = True
    col_border = np.zeros(width - 1, bool)
    col_border[cols - 1] = True
    border = np.concatenate([vertical[..., row_border, :].ravel(), horizontal[..., col_border].ravel()])
    inside = np.concatenate([vertical[..., ~row_border, :].ravel(), horizontal[..., ~col_border].ravel()])
    border, inside = border[np.isfinite(border)], inside[np.isfinite(inside)]
    b, i = float(border.mean()), float(inside.mean())
    return {"border": b, "inside": i, "ratio": b / i, "border_pairs": int(border.size),
            "inside_pairs": int(inside.size)}
