"""Integer encodings of operational radar quantities, and the rain → reflectivity conversion.

pysteps importers return float fields in physical units with NaN for "no data". The store keeps integers,
so each unit gets an encoding (``physical = raw * scale_factor + add_offset``):

========== ======================= ======== ====== ======== ==========================================
unit       quantity                dtype    scale  offset   range, fill
========== ======================= ======== ====== ======== ==========================================
``dBZ``    reflectivity            uint8    0.5    −32      −32 … 95 dBZ, 255 = missing
``mm/h``   rain_rate               uint16   0.01   0        0 … 655.34 mm/h, 65535 = missing
``mm``     rain_accumulation       uint16   0.01   0        0 … 655.34 mm, 65535 = missing
========== ======================= ======== ====== ======== ==========================================

The dBZ encoding is FMI's and KNMI's own 8-bit one (DN/2 − 32), and 0.01 mm is KNMI's accumulation unit, so
those archives round-trip exactly; other float products are quantised to half the scale. A source whose
files carry their own integer encoding (BoM netCDF) keeps it instead. Values outside the range are clipped
and the count is reported; rain below 0 is an error of the source and is clipped to 0 the same way.
"""

from __future__ import annotations

import numpy as np

from nowcast_pl.data.schema import FrameEncoding
from nowcast_pl.data.units import quantity_of, same_units

UNIT_ENCODINGS = {
    "dBZ": dict(dtype="uint8", units="dBZ", quantity="reflectivity", fill_value=255,
                scale_factor=0.5, add_offset=-32.0),
    "mm/h": dict(dtype="uint16", units="mm h-1", quantity="rain_rate", fill_value=65535,
                 scale_factor=0.01, add_offset=0.0),
    "mm": dict(dtype="uint16", units="mm", quantity="rain_accumulation", fill_value=65535,
               scale_factor=0.01, add_offset=0.0),
}
RAIN_QUANTITIES = ("rain_rate", "rain_accumulation")


def rain_quantity(unit: str) -> tuple[str, float]:
    """``("rain_rate", factor to mm/h)`` or ``("rain_accumulation", factor to mm)`` of an importer unit.

    Raises:
        ValueError: if ``unit`` is neither (e.g. ``"dBZ"``), naming it.
    """
    try:
        return quantity_of(unit, RAIN_QUANTITIES)
    except ValueError:
        raise ValueError(f"cannot convert unit {unit!r} to dBZ; expected a rain rate (mm/h) or an "
                         "accumulation (mm)") from None


def encoding_for_unit(unit: str, long_name: str, comment: str = "") -> FrameEncoding:
    """The store encoding of an importer unit (``"dBZ"``, ``"mm/h"`` or ``"mm"`` as pysteps names them, or
    another spelling of one of them, e.g. ``"mm h-1"``).

    Raises:
        ValueError: for another unit.
    """
    known = next((name for name in UNIT_ENCODINGS if same_units(unit, name)), None)
    if known is None:
        raise ValueError(f"no store encoding for unit {unit!r}; known units: {sorted(UNIT_ENCODINGS)}")
    return FrameEncoding(long_name=long_name, comment=comment, **UNIT_ENCODINGS[known])


def valid_raw_range(encoding: FrameEncoding) -> tuple[int, int]:
    """Smallest and largest raw values that encode data (the fill value excluded; rain is never < 0).

    Raises:
        ValueError: if the fill value lies strictly inside that range (it would collide with data).
    """
    info = np.iinfo(encoding.dtype)
    lo, hi = int(info.min), int(info.max)
    if encoding.quantity in RAIN_QUANTITIES:
        lo = max(lo, int(np.ceil(-encoding.add_offset / encoding.scale_factor)))
    if encoding.fill_value == hi:
        hi -= 1
    elif encoding.fill_value == lo:
        lo += 1
    elif lo < encoding.fill_value < hi:
        raise ValueError(f"fill value {encoding.fill_value} lies inside the data range {lo}..{hi} of {encoding}")
    return lo, hi


def encode_clipped(values: np.ndarray, encoding: FrameEncoding) -> tuple[np.ndarray, int]:
    """Physical values → raw integers, clipping to the encodable range.

    Args:
        values: (H, W) float physical values, NaN where there is no data.
        encoding: the store encoding.

    Returns:
        ``(raw, n_clipped)``: (H, W) raw values of ``encoding.dtype`` (``fill_value`` where NaN) and the number
        of finite values that were outside the range.
    """
    lo, hi = valid_raw_range(encoding)
    raw = np.round((np.asarray(values, dtype=np.float64) - encoding.add_offset) / encoding.scale_factor)
    finite = np.isfinite(raw)
    n_clipped = int(np.count_nonzero(finite & ((raw < lo) | (raw > hi))))
    raw = np.where(finite, np.clip(raw, lo, hi), encoding.fill_value)
    return raw.astype(encoding.dtype), n_clipped


def rain_to_dbz(values: np.ndarray, unit: str, *, accutime_minutes: float, zr_a: float, zr_b: float,
                floor_dbz: float) -> np.ndarray:
    """Rain rate or accumulation → reflectivity through ``Z = a R^b``.

    Args:
        values: (H, W) rain rate or accumulation (over ``accutime_minutes``), NaN where no data.
        unit: units of ``values``: a rain rate (``"mm/h"``) or an accumulation (``"mm"``), any spelling.
        accutime_minutes: accumulation period; an accumulation is first turned into the mean rate
            ``R = acc * 60 / accutime`` (mm/h).
        zr_a: the ``a`` of ``Z = a R^b`` (Z in mm⁶ m⁻³, R in mm/h).
        zr_b: the ``b`` of ``Z = a R^b``.
        floor_dbz: reflectivity given to dry pixels (R = 0), where dBZ would be −inf.

    Returns:
        (H, W) float64 dBZ = 10 log10(a R^b), ``floor_dbz`` where R <= 0, NaN where ``values`` is NaN.
    """
    quantity, factor = rain_quantity(unit)
    rate = np.asarray(values, dtype=np.float64) * factor
    if quantity == "rain_accumulation":
        rate = rate * (60.0 / accutime_minutes)
    wet = rate > 0
    dbz = np.full(rate.shape, floor_dbz)
    dbz[wet] = 10.0 * np.log10(zr_a) + 10.0 * zr_b * np.log10(rate[wet])
    dbz[np.isnan(rate)] = np.nan
    return np.maximum(dbz, floor_dbz)


def dbz_to_rain(dbz: np.ndarray, unit: str, *, accutime_minutes: float, zr_a: float, zr_b: float) -> np.ndarray:
    """Reflectivity → rain rate or accumulation through ``Z = a R^b``, the inverse of :func:`rain_to_dbz`.

    Args:
        dbz: (H, W) reflectivity (dBZ), NaN where no data.
        unit: wanted units: a rain rate (``"mm/h"``) or an accumulation (``"mm"``) over ``accutime_minutes``,
            any spelling.
        accutime_minutes: accumulation period of an accumulation (``acc = R * accutime / 60``).
        zr_a: the ``a`` of ``Z = a R^b`` (Z in mm⁶ m⁻³, R in mm/h).
        zr_b: the ``b`` of ``Z = a R^b``.

    Returns:
        (H, W) float64 ``R = (10^(dBZ/10) / a)^(1/b)`` in ``unit``, NaN where ``dbz`` is NaN.
    """
    quantity, factor = rain_quantity(unit)
    rate = (10.0 ** (np.asarray(dbz, dtype=np.float64) / 10.0) / zr_a) ** (1.0 / zr_b)
    if quantity == "rain_accumulation":
        rate = rate * (accutime_minutes / 60.0)
    return rate / factor
