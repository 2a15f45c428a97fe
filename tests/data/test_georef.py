"""Georeferencing on the model grid (``nowcast_pl.data.georef``): resized axes, a grid without a projection."""

import numpy as np
import pytest

from nowcast_pl.data import RadarStore
from nowcast_pl.data.georef import model_grid, resize_axis


def test_resized_axes_keep_the_extent_or_the_spacing():
    centres = np.array([10.5, 11.5, 12.5, 13.5])  # edges 10..14
    np.testing.assert_allclose(resize_axis(centres, 2, "area"), [11.0, 13.0])
    np.testing.assert_allclose(resize_axis(centres[::-1], 2, "bilinear"), [13.0, 11.0])
    np.testing.assert_allclose(resize_axis(centres, 7, "pad"), [9.5, 10.5, 11.5, 12.5, 13.5, 14.5, 15.5])


def test_grid_without_projection_gives_distances_and_netcdf_is_refused(tmp_path):
    from tests.helpers.stores import write_moving_store

    store = RadarStore(write_moving_store(tmp_path / "s.zarr", n_events=2, frames=10, size=16))
    grid = model_grid(store, (32, 32), "bilinear")
    np.testing.assert_allclose(grid.x[:2], [250.0, 750.0])  # 1 km pixels split in two
    assert not grid.georeferenced
    with pytest.raises(ValueError, match="needs a projection"):
        grid.pysteps_metadata("dBZ")
