"""The mlcast dataset form: EUMETNET mlcast radar composites as CF-convention Zarr datasets.

The mlcast community (github.com/mlcast-community) publishes radar archives as Zarr datasets that its
``mlcast-dataset-validator`` (``source_data/radar_precipitation`` spec, version 0.4.0) accepts. The validator is
the specification; the parts this module reads and writes are (section numbers of the spec):

* one float data variable with dims ``(time, y, x)`` (§4.3), chunked one frame per chunk (§4.1), compressed
  (§4.2), NaN for missing or out-of-range pixels, with ``long_name``, ``standard_name`` and ``units`` (§4.4):
  ``dbz`` / ``equivalent_reflectivity_factor`` / ``dBZ``, ``rr`` / ``rainfall_flux`` / ``kg m-2 h-1`` or
  ``rainfall_amount`` / ``rainfall_amount`` / ``kg m-2`` (:data:`FORMS`);
* projected ``x``/``y`` (CF ``standard_name``, length ``units``, ``axis``) and 2-D ``lat``/``lon`` coordinates
  (§3.1); a ``grid_mapping`` attribute naming a CRS variable that carries ``crs_wkt``, ``spatial_ref`` and the
  CF grid-mapping parameters, all consistent with ``lat``/``lon`` (§4.5);
* a strictly increasing ``time`` coordinate; times without data are not in ``time`` but listed in
  ``missing_times`` (§3.3);
* global attributes ``license`` (SPDX, §5.2) and the ``mlcast_*`` provenance attributes (§5.4,
  :class:`MlcastAttributes`); Zarr format 3 (§5.3).

The spec's acceptance minima (a 256×256 crop, ≤ 1 km pixels, ≥ 3 years of coverage, §3.2–§3.3) are properties
of an archive, not of the form: a smaller dataset is written and read the same way, the validator fails it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from nowcast_pl.data.units import quantity_of

#: The validator version whose spec this module follows (written as ``mlcast_dataset_validator_version``).
VALIDATOR_VERSION = "0.4.0"
#: Global attribute of exports: the store encoding of the frames, so that a re-import is exact.
ENCODING_ATTRIBUTE = "nowcast_pl_frame_encoding"


@dataclass(frozen=True)
class MlcastForm:
    """How one quantity is named in an mlcast dataset.

    Attributes:
        variable: name of the data variable.
        standard_name: its CF standard name.
        units: the CF canonical units written on export.
        reference: our reference unit of the quantity (:data:`nowcast_pl.data.units.REFERENCE_UNITS`).
    """

    variable: str
    standard_name: str
    units: str
    reference: str


FORMS = {
    "reflectivity": MlcastForm("dbz", "equivalent_reflectivity_factor", "dBZ", "dBZ"),
    "rain_rate": MlcastForm("rr", "rainfall_flux", "kg m-2 h-1", "mm/h"),
    "rain_accumulation": MlcastForm("rainfall_amount", "rainfall_amount", "kg m-2", "mm"),
}
#: CF standard names of the data variables the validator accepts, by our quantity.
STANDARD_NAMES = {
    "equivalent_reflectivity_factor": "reflectivity",
    "rainfall_flux": "rain_rate",
    "precipitation_flux": "rain_rate",
    "rainfall_amount": "rain_accumulation",
    "precipitation_amount": "rain_accumulation",
}
LENGTH_UNITS = {"m": 1.0, "metre": 1.0, "meter": 1.0, "metres": 1.0, "meters": 1.0,
                "km": 1000.0, "kilometre": 1000.0, "kilometer": 1000.0, "kilometres": 1000.0, "kilometers": 1000.0}

_CREATED_BY = re.compile(r"^[^<>]*\S[^<>]* <[^<>\s]+@[^<>\s]+>$")
_CREATED_WITH = re.compile(r"^https://github\.com/mlcast-community/mlcast-dataset-[^/@\s]+-[^/@\s]+@\S+$")
_IDENTIFIER = re.compile(r"^[A-Z]{2}-[A-Za-z0-9](?:\w*[A-Za-z0-9])?-[A-Za-z0-9](?:\w*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class MlcastAttributes:
    """The provenance attributes an mlcast dataset must carry (spec §5.2, §5.4); the user states them.

    Args:
        license: SPDX identifier of the data's licence, e.g. ``"CC-BY-4.0"``.
        created_by: the dataset's contact, ``"Name <email>"``.
        created_with: GitHub URL and revision of the repository that creates the dataset, which mlcast requires
            to be ``https://github.com/mlcast-community/mlcast-dataset-<organisation>-<name>@<version>``.
        identifier: ``<country_code>-<entity>-<physical_variable>``, e.g. ``"FI-FMI-rainfall_flux"``.
        dataset_version: version of the dataset (semver or calver), e.g. ``"0.1.0"``.

    Raises:
        ValueError: naming the attribute, its value and the expected form, on a value the validator would fail.
    """

    license: str
    created_by: str
    created_with: str
    identifier: str
    dataset_version: str = "0.1.0"

    def __post_init__(self) -> None:
        checks = (
            ("license", bool(self.license.strip()) and " " not in self.license.strip(),
             "an SPDX identifier such as CC-BY-4.0"),
            ("created_by", bool(_CREATED_BY.match(self.created_by)), "'Name <email>'"),
            ("created_with", bool(_CREATED_WITH.match(self.created_with)),
             "https://github.com/mlcast-community/mlcast-dataset-<organisation>-<name>@<version>"),
            ("identifier", bool(_IDENTIFIER.match(self.identifier)),
             "<country_code>-<entity>-<physical_variable>, e.g. FI-FMI-rainfall_flux"),
            ("dataset_version", bool(re.match(r"^\d+(\.\d+)*$", self.dataset_version)), "e.g. 0.1.0 or 2025.1"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"mlcast attribute {name}={getattr(self, name)!r} is not {expected}")

    def global_attrs(self, created_on: str) -> dict[str, str]:
        """The global attributes of spec §5.2 and §5.4 (``created_on``: ISO 8601 UTC time of writing)."""
        return {
            "license": self.license.strip(),
            "mlcast_created_on": created_on,
            "mlcast_created_by": self.created_by,
            "mlcast_created_with": self.created_with,
            "mlcast_dataset_version": self.dataset_version,
            "mlcast_dataset_validator_version": VALIDATOR_VERSION,
            "mlcast_dataset_identifier": self.identifier,
        }


def form_of(quantity: str, units: str) -> tuple[MlcastForm, float]:
    """The mlcast form of a quantity and the factor from ``units`` to the form's units.

    Args:
        quantity: our quantity (``reflectivity``, ``rain_rate``, ``rain_accumulation``).
        units: units of the values, e.g. ``"mm h-1"``.

    Raises:
        ValueError: if the quantity has no mlcast form or the units do not measure it.
    """
    if quantity not in FORMS:
        raise ValueError(f"quantity {quantity!r} has no mlcast form: mlcast datasets hold reflectivity (dBZ), a "
                         "rain rate or a rain accumulation")
    found, factor = quantity_of(units)
    if found != quantity:
        raise ValueError(f"units {units!r} measure {found}, not {quantity}")
    return FORMS[quantity], factor


def missing_times(times: np.ndarray) -> np.ndarray:
    """The times an mlcast dataset lists in ``missing_times``: the gaps of ``times`` on its regular step.

    The step is the smallest interval between consecutive times, as the validator infers it (spec §3.3).

    Args:
        times: (T,) datetime64, strictly increasing.

    Returns:
        (M,) datetime64[s] times on the step between the first and last time that are not in ``times``.

    Raises:
        ValueError: naming the time, if one is not on the step (mlcast then needs ``consistent_timestep_start``,
            which this project does not write).
    """
    seconds = np.asarray(times, dtype="datetime64[s]").astype(np.int64)
    if seconds.size < 2:
        return np.array([], dtype="datetime64[s]")
    step = int(np.diff(seconds).min())
    offsets = seconds - seconds[0]
    off_grid = np.flatnonzero(offsets % step)
    if off_grid.size:
        bad = np.datetime64(int(seconds[off_grid[0]]), "s")
        raise ValueError(f"time {bad} is not on the regular step of {step} s from {times[0]}; an mlcast dataset "
                         "has one time step (export a store whose frames lie on one step)")
    grid = np.ones(offsets[-1] // step + 1, dtype=bool)
    grid[offsets // step] = False
    return (seconds[0] + np.flatnonzero(grid) * step).astype("datetime64[s]")


def latlon(projection: str, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of the pixel centres of a projected grid.

    Args:
        projection: PROJ string or WKT.
        y: (H,) projected coordinates in metres.
        x: (W,) likewise.

    Returns:
        ``(lat, lon)``: (H, W) float64 degrees north and east (WGS 84).
    """
    from pyproj import CRS, Transformer

    transformer = Transformer.from_crs(CRS.from_user_input(projection), "EPSG:4326", always_xy=True)
    xx, yy = np.meshgrid(np.asarray(x, np.float64), np.asarray(y, np.float64))
    lon, lat = transformer.transform(xx, yy)
    return np.asarray(lat), np.asarray(lon)


def crs_attrs(projection: str) -> dict[str, Any]:
    """Attributes of the CRS variable: CF grid mapping (CF §5.6), ``crs_wkt`` and GDAL's ``spatial_ref``.

    Raises:
        ValueError: naming the projection, if pyproj cannot read it.
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        cf = CRS.from_user_input(projection).to_cf()
    except CRSError as error:
        raise ValueError(f"projection {projection[:80]!r} is not one pyproj reads ({error})") from None
    cf = {key: value for key, value in cf.items() if value is not None}
    return {**cf, "spatial_ref": cf["crs_wkt"]}
