"""Physical units for the pysteps baselines: [0, 1] frames ↔ store units ↔ rain rate (mm/h) ↔ dB.

Reflectivity converts with the Marshall–Palmer relation Z = 200 R^1.6 (Marshall & Palmer 1948; pysteps'
``utils.conversion.to_rainrate`` default), Z in mm⁶/m³ and dBZ = 10 log10 Z. An accumulation in ``mm`` is
taken over one time step (as the operational stores write it, e.g. BoM's 10-minute ``prcp-c10``). The dB
transform of a rain rate is 10 log10 R with rates below 0.1 mm/h set to −15 dB (pysteps examples).
pysteps is imported where it is used, so importing the tasks does not import it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from nowcast_pl.data.transforms import unit_to_physical

MARSHALL_PALMER_A = 200.0
MARSHALL_PALMER_B = 1.6
RAIN_THRESHOLD_MM_H = 0.1
ZERO_VALUE_DB = -15.0
SUPPORTED_UNITS = ("dBZ", "mm/h", "mm")


def check_units(units: str, owner: str) -> str:
    """Return ``units`` if the baselines can convert them to rain rate, else raise ValueError naming the fix."""
    if units not in SUPPORTED_UNITS:
        raise ValueError(
            f"{owner} works in rain rate and converts from the store's units, which must be one of "
            f"{list(SUPPORTED_UNITS)}; got units={units!r} (set the store's encoding units when converting it)"
        )
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
    if units == "dBZ":
        return (10.0 ** (values / 10.0) / MARSHALL_PALMER_A) ** (1.0 / MARSHALL_PALMER_B)
    if units == "mm":
        return values * 60.0 / time_step_minutes
    return values


def from_rain_rate(rate: np.ndarray, units: str, time_step_minutes: float) -> np.ndarray:
    """Rain rate in mm/h → store units (inverse of :func:`to_rain_rate`; 0 mm/h → −inf dBZ)."""
    if units == "dBZ":
        with np.errstate(divide="ignore"):
            return 10.0 * np.log10(MARSHALL_PALMER_A * rate**MARSHALL_PALMER_B)
    if units == "mm":
        return rate * time_step_minutes / 60.0
    return rate


def rain_rate_db(rate: np.ndarray) -> np.ndarray:
    """mm/h → dB (10 log10 R), rates below 0.1 mm/h set to −15 dB (pysteps ``dB_transform``)."""
    from pysteps.utils import transformation  # pysteps prints a line when imported: only when used

    decibels, _ = transformation.dB_transform(rate, threshold=RAIN_THRESHOLD_MM_H, zerovalue=ZERO_VALUE_DB)
    return decibels


def rain_rate_from_db(decibels: np.ndarray) -> np.ndarray:
    """dB → mm/h; values below 10 log10(0.1) = −10 dB become 0 mm/h (pysteps' inverse ``dB_transform``)."""
    threshold = 10.0 * np.log10(RAIN_THRESHOLD_MM_H)
    return np.where(decibels >= threshold, 10.0 ** (decibels / 10.0), 0.0)
