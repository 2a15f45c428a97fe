"""mlcast-form datasets written by hand with xarray, as a data provider would, and the validator run on them."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import CRS, Transformer
from zarr.codecs import ZstdCodec

#: ETRS-TM35FIN (Finland), a transverse Mercator grid as FMI's composites use.
PROJECTION = CRS.from_epsg(3067)
#: One frame in 2020, then a 5-minute sequence on 2023-01-01 whose frame 5 is missing: more than the 3 years
#: the spec asks of an archive, with few frames.
TIMES = pd.to_datetime(["2020-01-01T00:00"]).append(pd.date_range("2023-01-01T00:00", periods=12, freq="5min"))
MISSING = 6  # position in TIMES of the frame listed in missing_times instead of time
ATTRIBUTES = dict(license="CC-BY-4.0", created_by="Test Person <test@example.org>",
                  created_with="https://github.com/mlcast-community/mlcast-dataset-test-synthetic@v0.1.0",
                  identifier="FI-TEST-rainfall_flux", dataset_version="0.1.0")


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) pixel centres in metres of a 1 km grid in southern Finland, y decreasing (north-up)."""
    return 7_000_000.0 - 1000.0 * np.arange(size), 300_000.0 + 1000.0 * np.arange(size)


def write_mlcast_dataset(path: Path, *, size: int = 256, seed: int = 0) -> xr.Dataset:
    """A valid mlcast dataset of rain rate (kg m-2 h-1) at ``path`` (Zarr 3); returns what was written.

    Values are 0.01-mm/h multiples (exact in the store's encoding); a corner of every frame is NaN (no data).
    """
    y, x = grid(size)
    lon, lat = Transformer.from_crs(PROJECTION, "EPSG:4326", always_xy=True).transform(*np.meshgrid(x, y))
    rng = np.random.default_rng(seed)
    values = (np.round(rng.gamma(0.5, 2.0, (len(TIMES), size, size)), 2)).astype(np.float32)
    values[:, :8, :8] = np.nan
    keep = np.arange(len(TIMES)) != MISSING
    cf = PROJECTION.to_cf()
    ds = xr.Dataset(
        {"rr": (("time", "y", "x"), values[keep], {"standard_name": "rainfall_flux", "long_name": "rain rate",
                                                  "units": "kg m-2 h-1", "grid_mapping": "crs"}),
         "crs": ((), np.int32(0), {**cf, "spatial_ref": cf["crs_wkt"]})},
        coords={"time": ("time", TIMES[keep]),
                "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "m", "axis": "Y"}),
                "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "m", "axis": "X"}),
                "lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
                "lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
                "missing_times": ("missing_times", TIMES[[MISSING]])},
        attrs={"license": "CC-BY-4.0", "consistent_timestep_start": "2023-01-01T00:00:00",
               "mlcast_created_on": "2026-01-01T00:00:00Z", "mlcast_created_by": ATTRIBUTES["created_by"],
               "mlcast_created_with": ATTRIBUTES["created_with"], "mlcast_dataset_version": "0.1.0",
               "mlcast_dataset_validator_version": "0.4.0", "mlcast_dataset_identifier": ATTRIBUTES["identifier"]})
    encoding = {"rr": {"chunks": (1, size, size), "compressors": [ZstdCodec(level=3)]}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        ds.to_zarr(path, mode="w", zarr_format=3, encoding=encoding, consolidated=True)
    return ds


def validator_failures(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The FAIL results of mlcast-dataset-validator's radar precipitation spec on the dataset at ``path``.

    The validator asks GitHub whether the ``mlcast_created_with`` repository and revision exist; tests have no
    network, so those two look-ups answer yes (their format is still checked).
    """
    from loguru import logger
    from mlcast_dataset_validator.checks.global_attributes import mlcast_metadata
    from mlcast_dataset_validator.specs.source_data import radar_precipitation

    logger.disable("mlcast_dataset_validator")
    monkeypatch.setattr(mlcast_metadata, "github_repo_exists", lambda org, repo: True)
    monkeypatch.setattr(mlcast_metadata, "github_ref_exists", lambda org, repo, ref: f"/git/refs/tags/{ref}")
    report, _ = radar_precipitation.validate_dataset(xr.open_zarr(path))
    assert report.results, "the validator checked nothing"
    return [f"{r.section} {r.requirement}: {r.detail}" for r in report.results if r.status == "FAIL"]
