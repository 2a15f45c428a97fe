"""What a model needs of its observed frames, the frames handed to it, and the checks of one against the other.

:class:`ModelInputs` is read from a task's hyper-parameters (frames, time step, units, thresholds);
:class:`ObservedFrames` is what both readers (:mod:`nowcast_pl.forecasting.raw_inputs` for raw radar files,
:func:`nowcast_pl.forecasting.store_inputs.read_store_inputs` for a radar store) return. A unit that is not the
model's is converted only when the user asks (``--to-dbz``, ``--to-rain``), through the Z–R relation of the
converters (:func:`data_prep.units.rain_to_dbz`, :func:`data_prep.units.dbz_to_rain`); otherwise it is refused
with :class:`InputError`, one line naming the file and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_prep.units import dbz_to_rain, rain_quantity, rain_to_dbz
from nowcast_pl.data.georef import ModelGrid
from nowcast_pl.data.units import quantity_of, same_units

DEFAULT_ZR = (200.0, 1.6)  # Marshall-Palmer, the converters' default where the files state no Z-R relation


class InputError(ValueError):
    """Observed frames the model cannot take; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class ModelInputs:
    """What a model expects of its observed frames.

    Attributes:
        in_frames: consecutive observed frames per forecast (T_in).
        out_frames: forecast frames (T_out).
        step_seconds: time between frames (s), that of the store it was trained on.
        units: physical units of its inputs and forecasts, e.g. ``"dBZ"``.
        thresholds: event thresholds in ``units`` (exceedance probabilities of the forecast file).
        value_range: physical (lo, hi) mapped to [0, 1] (the colour scale of the quick-look).
    """

    in_frames: int
    out_frames: int
    step_seconds: int
    units: str
    thresholds: tuple[float, ...]
    value_range: tuple[float, float]

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> ModelInputs:
        """From a :class:`~nowcast_pl.tasks.base.NowcastTask`'s hyper-parameters (``model.hparams`` or a
        checkpoint's ``hyper_parameters``).

        Thresholds given in a paper's "pixel scale" (``evaluation_scale``) are turned into physical units.
        """
        lo, hi = (float(v) for v in hparams.get("value_range", (0.0, 1.0)))
        thresholds = [float(t) for t in hparams.get("thresholds") or ()]
        scale = hparams.get("evaluation_scale")
        if scale is not None:
            thresholds = [lo + t / float(scale) * (hi - lo) for t in thresholds]
        return cls(in_frames=int(hparams["in_frames"]), out_frames=int(hparams["out_frames"]),
                   step_seconds=int(round(float(hparams.get("time_step_minutes", 5.0)) * 60)),
                   units=str(hparams.get("units") or ""), thresholds=tuple(thresholds), value_range=(lo, hi))

    @property
    def step_minutes(self) -> float:
        return self.step_seconds / 60.0


@dataclass(frozen=True)
class ObservedFrames:
    """The observed frames a forecast starts from, on their own grid.

    Attributes:
        values: (T_in, H, W) float32 physical values in ``units``, NaN where there is no data.
        times: (T_in,) datetime64[s] UTC frame times, ``step`` apart; the last is the forecast's start.
        units: physical units of ``values``.
        grid: pixel-centre coordinates and projection of the input grid.
        files: where each frame came from (files, or ``store@time``).
        attrs: provenance for the forecast file: ``title``, ``institution``, ``source``, ``licence``,
            ``citation`` and, after a unit conversion, ``input_conversion``.
    """

    values: np.ndarray
    times: np.ndarray
    units: str
    grid: ModelGrid
    files: tuple[str, ...]
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def init_time(self) -> np.datetime64:
        """Time of the last observed frame (the forecast's reference time)."""
        return self.times[-1]


def convert_units(values: np.ndarray, units: str, model: ModelInputs, *, where: str, to_dbz: bool = False,
                  to_rain: bool = False, zr: tuple[float | None, float | None] = (None, None),
                  accutime_minutes: float | None = None) -> tuple[np.ndarray, str]:
    """``values`` in the model's units, converting only as asked.

    Args:
        values: (T, H, W) physical values in ``units``.
        units: their units.
        model: what the model expects.
        where: the file (or store) the values come from, named in errors.
        to_dbz: convert rain (rate or accumulation) to reflectivity.
        to_rain: convert reflectivity to the model's rain quantity.
        zr: (a, b) of ``Z = a R^b``; None for Marshall-Palmer's 200 and 1.6.
        accutime_minutes: accumulation period of accumulations (default: the model's time step).

    Returns:
        ``(values, note)``: float32 values in ``model.units`` and a note of the conversion ("" when none).

    Raises:
        InputError: when the units differ and no (or the wrong) conversion was asked for.
    """
    a, b = zr[0] or DEFAULT_ZR[0], zr[1] or DEFAULT_ZR[1]
    accutime = accutime_minutes or model.step_minutes
    values = np.asarray(values, dtype=np.float32)
    if (to_dbz and to_rain) or (to_dbz and same_units(units, "dBZ")) or (to_rain and not same_units(units, "dBZ")):
        raise InputError(f"{where}: holds {units!r}, the model takes {model.units!r}; "
                         + _unit_fix(units, model.units))
    if to_dbz:
        if not same_units(model.units, "dBZ"):
            raise InputError(f"{where}: --to-dbz makes reflectivity but the model takes {model.units!r}; "
                             "drop --to-dbz")
        dbz = np.stack([rain_to_dbz(v, units, accutime_minutes=accutime, zr_a=a, zr_b=b, floor_dbz=-32.0)
                        for v in values])
        return dbz.astype(np.float32), f"converted from {units} with Z = {a:g} R^{b:g} (R in mm/h)"
    if to_rain:
        try:
            rain_quantity(model.units)
        except ValueError:
            raise InputError(f"{where}: --to-rain makes rain but the model takes {model.units!r}; "
                             "drop --to-rain") from None
        rain = dbz_to_rain(values, model.units, accutime_minutes=accutime, zr_a=a, zr_b=b)
        return rain.astype(np.float32), f"converted from dBZ to {model.units} with Z = {a:g} R^{b:g} (R in mm/h)"
    if same_units(units, model.units):
        return values, ""
    factor = _same_quantity_factor(units, model.units)
    if factor is None:
        raise InputError(f"{where}: holds {units!r}, the model takes {model.units!r}; "
                         + _unit_fix(units, model.units))
    return values * np.float32(factor), f"converted from {units} to {model.units}"


def _same_quantity_factor(units: str, target: str) -> float | None:
    """Factor from ``units`` to ``target`` when both measure the same quantity (e.g. mm/s and mm/h), else None."""
    try:
        quantity, to_reference = quantity_of(units)
        target_quantity, target_to_reference = quantity_of(target)
    except ValueError:
        return None
    return to_reference / target_to_reference if quantity == target_quantity else None


def _unit_fix(units: str, target: str) -> str:
    """The command-line fix for frames in ``units`` given to a model in ``target``."""
    if same_units(target, "dBZ") and _is_rain(units):
        return "add --to-dbz to convert rain to reflectivity with Z = a R^b (--zr-a, --zr-b)"
    if same_units(units, "dBZ") and _is_rain(target):
        return "add --to-rain to convert reflectivity to rain with Z = a R^b (--zr-a, --zr-b)"
    if same_units(units, target):
        return "drop --to-dbz/--to-rain"
    return f"give frames in {target} (this model cannot take {units})"


def _is_rain(units: str) -> bool:
    try:
        rain_quantity(units)
    except ValueError:
        return False
    return True
