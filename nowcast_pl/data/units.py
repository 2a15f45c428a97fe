"""Physical units of stores and forecasts, parsed with pint instead of compared as text.

Converters write CF/UDUNITS spellings (``mm h-1``), pysteps names the same unit ``mm/h``, a user may write
``mm hr^-1`` or ``kg m-2 h-1``: all are one rain rate. Every place that checks or converts units goes through
this module. Three quantities have a reference unit, the one the code computes in:

=================== ========= ============================================================================
quantity            reference accepted
=================== ========= ============================================================================
reflectivity        dBZ       ``dBZ`` (logarithmic; no other unit converts to it)
rain_rate           mm/h      any length per time (``mm h-1``, ``m s-1``), or water mass per area per time
rain_accumulation   mm        any length (``mm``, ``m``), or water mass per area (``kg m-2`` = 1 mm of water)
=================== ========= ============================================================================
"""

from __future__ import annotations

import re
from functools import cache

import pint

REFERENCE_UNITS = {"reflectivity": "dBZ", "rain_rate": "mm/h", "rain_accumulation": "mm"}

# UDUNITS writes exponents as trailing integers ("h-1", "m2"); pint needs "**". A signed integer right after a
# letter is an exponent, unless the letter is the "e" of a number such as "1e-3".
_EXPONENT = re.compile(r"(?<=[A-Za-z])(?<![0-9][eE])([+-]?\d+)")

REGISTRY = pint.UnitRegistry(preprocessors=[lambda text: _EXPONENT.sub(r"**\1", text)])
# Reflectivity factor in decibels: its own dimension, so it is never converted to or from a linear unit.
REGISTRY.define("dBZ = [reflectivity] = dBz")
_WATER_DENSITY = REGISTRY.Quantity(1000.0, "kg/m**3")


@cache
def parse_units(text: str) -> pint.Unit:
    """The pint unit of a units attribute (CF/UDUNITS or pint spelling).

    Raises:
        ValueError: naming the text, if pint cannot parse it.
    """
    try:
        return REGISTRY.parse_units(text.strip())
    except (pint.errors.PintError, AttributeError, TypeError, ValueError, SyntaxError) as error:
        raise ValueError(f"units {text!r} are not a unit pint can parse ({error}); write e.g. 'dBZ', 'mm h-1' "
                         "or 'mm'") from None


def conversion_factor(units: str, reference: str) -> float:
    """Factor ``f`` such that ``value in reference = f * value in units``; water mass per area is taken as depth.

    Raises:
        ValueError: if either text does not parse or the two do not measure the same quantity.
    """
    quantity = _as_water_depth(REGISTRY.Quantity(1.0, parse_units(units)))
    target = parse_units(reference)
    if quantity.dimensionality != (1.0 * target).dimensionality:
        raise ValueError(f"units {units!r} do not convert to {reference!r}")
    return float(quantity.to(target).magnitude)


def same_units(first: str, second: str) -> bool:
    """Whether two units attributes name the same unit (``"mm h-1"`` and ``"mm/h"`` do).

    Raises:
        ValueError: if either text does not parse.
    """
    parse_units(first), parse_units(second)
    try:
        return abs(conversion_factor(first, second) - 1.0) < 1e-12
    except ValueError:
        return False


def quantity_of(units: str, quantities: tuple[str, ...] = tuple(REFERENCE_UNITS)) -> tuple[str, float]:
    """Which of ``quantities`` a units attribute measures, and its factor to that quantity's reference unit.

    Args:
        units: units attribute, e.g. ``"mm h-1"``.
        quantities: candidate names among :data:`REFERENCE_UNITS`.

    Returns:
        ``(quantity, factor)``: e.g. ``("rain_rate", 1.0)`` for ``"mm h-1"``, ``("rain_rate", 3600.0)`` for
        ``"mm s-1"``.

    Raises:
        ValueError: naming the units and the quantities expected, if none matches.
    """
    parse_units(units)
    for name in quantities:
        try:
            return name, conversion_factor(units, REFERENCE_UNITS[name])
        except ValueError:
            continue
    expected = ", ".join(f"{name} ({REFERENCE_UNITS[name]})" for name in quantities)
    raise ValueError(f"units {units!r} measure none of: {expected}")


def _as_water_depth(quantity: pint.Quantity) -> pint.Quantity:
    """Water mass per area (per time) → water depth (per time), e.g. 1 kg m-2 → 1 mm; others unchanged."""
    mass_per_area = REGISTRY.Quantity(1.0, "kg/m**2").dimensionality
    dims = quantity.dimensionality
    if dims == mass_per_area or dims == mass_per_area / REGISTRY.Quantity(1.0, "s").dimensionality:
        return quantity / _WATER_DENSITY
    return quantity
