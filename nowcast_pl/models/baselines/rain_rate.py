"""Physical units for the pysteps baselines: [0, 1] frames ↔ store units ↔ rain rate (mm/h) ↔ dB.

Reflectivity converts with the Marshall–Palmer relation Z = 200 R^1.6 (Marshall & Palmer 1948; pysteps'
``utils.conversion.to_rainrate`` default), Z in mm⁶/m³ and dBZ = 10 log10 Z. An accumulation in ``mm`` is
taken over one time step (as the operational stores write it, e.g. BoM's 10-minute ``prcp-c10``). The dB
transform of a rain rate is 10 log10 R with rates below 0.1 mm/h set to −15 dB (pysteps examples).
pysteps is imported where it is used (:func:`nowcast_pl.pysteps_import.import_pysteps`), so importing the
tasks does not import it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from nowcast_pl.data.transforms import unit_to_physical
from nowcast_pl.data.units import quantity_of
from nowcast_pl.pysteps_import import import_pysteps

MARSHALL_PALMER_A = 200.0
MARSHALL_PALMER_B = 1.6
RAIN_THRESHOLD_MM_H = 0.1
ZERO_VALUE_DB = -15.0
RAIN_QUANTITIES = ("reflectivity", "rain_rate", "rain_accumulation")


def check_units(units: str, owner: str) -> str:
    """Return ``units`` if the baselines can convert them to rain rate, else raise ValueError naming the fix.

    Any spelling of dBZ, a rain rate or a rain accumulation is accepted (``mm h-1``, ``mm/h``, ``kg m-2``; see
    :mod:`nowcast_pl.data.units`).
    """
    try:
        quantity_of(units, RAIN_QUANTITIES)
    except ValueError:
        raise ValueError(f"{owner} converts the store's units to rain rate, but units={units!r} are not "
                         "reflectivity (dBZ), a rain rate (e.g. mm h-1) or a rain accumulation over one time step "
                         "(e.g. mm); convert the store to one of these") from None
    return units


def to_physical(frames: Tensor, value_range: tuple[float, float]) -> np.ndarray:
    """(..., H, W) frames in [0, 1] → float64 numpy in store units (``value_range`` maps to 0 and 1)."""
    return unit_to_physical(frames.detach().to(torch.float64).cpu().numpy(), value_range)


def to_unit_interval(values: np.ndarray, value_range: tuple[float, float], like: Tensor) -> Tensor:
    """Store units → frames in [0, 1] (not clamped; the task base clamps), dtype and device of ``like``."""
    low, high = value_range
    return torch.from_numpy((values - low) / (high - low)).to(device=like.device, dtype=like.dtype)


def to_rain_rate(values: np.ndarray, units: str, time_step_minutes: float) -> np.ndarray:
    """Store units → rain rate in mm/h (float64; NaN stays NaN)."""
    quantity, factor = quantity_of(units, RAIN_QUANTITIES)
    if quantity == "reflectivity":
        return (10.0 ** (values / 10.0) / MARSHALL_PALMER_A) ** (1.0 / MARSHALL_PALMER_B)
    if quantity == "rain_accumulation":
        return values * factor * 60.0 / time_step_minutes
    return values * factor


def from_rain_rate(rate: np.ndarray, units: str, time_step_minutes: float) -> np.ndarray:
    """Rain rate in mm/h → store units (inverse of :func:`to_rain_rate`; 0 mm/h → −inf dBZ)."""
    quantity, factor = quantity_of(units, RAIN_QUANTITIES)
    if quantity == "reflectivity":
        with np.errstate(divide="ignore"):
            return 10.0 * np.log10(MARSHALL_PALMER_A * rate**MARSHALL_PALMER_B)
    if quantity == "rain_accumulation":
        return rate * time_step_minutes / 60.0 / factor
    return rate / factor


def rain_rate_db(rate: np.ndarray) -> np.ndarray:
    """mm/h → dB (10 log10 R), rates below 0.1 mm/h set to −15 dB (pysteps ``dB_transform``)."""
    transformation = import_pysteps("pysteps.utils.transformation")
    decibels, _ = transformation.dB_transform(rate, threshold=RAIN_THRESHOLD_MM_H, zerovalue=ZERO_VALUE_DB)
    return decibels


def rain_rate_from_db(decibels: np.ndarray) -> np.ndarray:
    """dB → mm/h; values below 10 log10(0.1) = −10 dB become 0 mm/h (pysteps' inverse ``dB_transform``)."""
    threshold = 10.0 * np.log10(RAIN_THRESHOLD_MM_H)
    return np.where(decibels >= threshold, 10.0 ** (decibels / 10.0), 0.0)
