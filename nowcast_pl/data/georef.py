"""Georeferencing of the model grid: a store's projection and pixel coordinates carried through resizing.

A radar store may hold projected ``y``/``x`` pixel-centre coordinates in metres and a ``projection`` (PROJ
string or WKT) attribute (``docs/data-format.md``). The data module resizes frames to the model grid
(``frame_size``, ``resize_method``), so forecasts live on another grid; :func:`model_grid` gives that
grid's coordinates, a CF grid mapping (CF conventions §5.6) and the metadata pysteps' exporters expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nowcast_pl.data.integrity import reading
from nowcast_pl.data.store import RadarStore, open_group
from nowcast_pl.data.units import same_units

# The unit names of pysteps' metadata (its exporters accept these three).
PYSTEPS_UNITS = ("mm/h", "mm", "dBZ")


@dataclass(frozen=True)
class ModelGrid:
    """Pixel-centre coordinates of the model grid.

    Attributes:
        y: (h,) metres, or None when the store states neither coordinates nor a pixel size.
        x: (w,) metres, or None likewise.
        projection: PROJ string or WKT of the store, "" when unknown.
        projected: True when ``y``/``x`` are the store's projected coordinates; False when they are only
            distances from the grid's corner computed from ``pixel_size_m`` (no projection).
    """

    y: np.ndarray | None
    x: np.ndarray | None
    projection: str
    projected: bool

    @property
    def georeferenced(self) -> bool:
        """Projected coordinates and a projection: enough for a CF grid mapping and pysteps' exporters."""
        return self.projected and bool(self.projection)

    def cf_grid_mapping(self) -> dict[str, Any]:
        """CF grid-mapping attributes of the projection (``grid_mapping_name``, ``crs_wkt``, ...)."""
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            attrs = CRS.from_user_input(self.projection).to_cf()
        except CRSError:
            attrs = {}
        return {**{k: v for k, v in attrs.items() if v is not None}, "proj4_params": self.projection}

    def pysteps_metadata(self, units: str) -> dict[str, Any]:
        """The ``metadata`` dict of :func:`pysteps.io.exporters.initialize_forecast_exporter_netcdf`.

        Raises:
            ValueError: if the grid is not georeferenced or pysteps has no name for ``units``.
        """
        if not self.georeferenced:
            raise ValueError("pysteps' NetCDF exporter needs a projection and projected y/x coordinates; "
                             "the store has none (write the Zarr forecast only)")
        pysteps_unit = next((name for name in PYSTEPS_UNITS if same_units(units, name)), None)
        if pysteps_unit is None:
            raise ValueError(f"pysteps' NetCDF exporter takes mm h-1, mm or dBZ, the store is in {units!r}")
        dx, dy = _spacing(self.x), _spacing(self.y)
        return {
            "projection": self.projection, "cartesian_unit": "m", "unit": pysteps_unit,
            "x1": float(self.x.min() - abs(dx) / 2), "x2": float(self.x.max() + abs(dx) / 2),
            "y1": float(self.y.min() - abs(dy) / 2), "y2": float(self.y.max() + abs(dy) / 2),
            "xpixelsize": abs(dx), "ypixelsize": abs(dy), "yorigin": "upper" if dy < 0 else "lower",
        }


def model_grid(store: RadarStore, frame_size: tuple[int, int] | None, resize_method: str) -> ModelGrid:
    """Coordinates of the data module's grid for ``store`` (see :class:`ModelGrid`).

    Args:
        store: the source store.
        frame_size: model grid (h, w), or None for the store's own grid.
        resize_method: the data module's resize method; ``"pad"`` extends the axes by whole pixels,
            every other method spreads the store's extent over the new number of pixels.
    """
    h, w = frame_size or store.frame_shape
    group = open_group(store.path)
    projection = str(store.attrs.get("projection") or "")
    if {"y", "x"} <= set(group.array_keys()):
        with reading(store.path, "array 'y' or 'x'"):
            y, x = np.asarray(group["y"][:], np.float64), np.asarray(group["x"][:], np.float64)
        return ModelGrid(resize_axis(y, h, resize_method), resize_axis(x, w, resize_method), projection, True)
    pixel = store.attrs.get("pixel_size_m")
    if pixel is None:
        return ModelGrid(None, None, projection, False)
    rows, cols = store.frame_shape
    # Row 0 is the top (northern) edge, as the frames are displayed.
    y = (rows - 1 - np.arange(rows) + 0.5) * float(pixel)
    x = (np.arange(cols) + 0.5) * float(pixel)
    return ModelGrid(resize_axis(y, h, resize_method), resize_axis(x, w, resize_method), projection, False)


def resize_axis(centres: np.ndarray, size: int, resize_method: str) -> np.ndarray:
    """Pixel centres of a regular axis resized to ``size`` pixels the way the frames are.

    Args:
        centres: (N,) pixel centres, evenly spaced (increasing or decreasing).
        size: new number of pixels.
        resize_method: ``"pad"`` keeps the spacing and adds pixels around the centre (extra one at the
            end, as :func:`nowcast_pl.data.transforms.resize_frames`); other methods keep the extent.

    Returns:
        (size,) float64 pixel centres.
    """
    n = centres.size
    if size == n:
        return centres.astype(np.float64)
    step = _spacing(centres)
    if resize_method == "pad":
        return centres[0] + (np.arange(size) - (size - n) // 2) * step
    return centres[0] - step / 2 + (np.arange(size) + 0.5) * step * n / size


def _spacing(centres: np.ndarray) -> float:
    if centres.size < 2:
        raise ValueError("a georeferenced axis needs at least two pixels")
    return float(centres[-1] - centres[0]) / (centres.size - 1)
