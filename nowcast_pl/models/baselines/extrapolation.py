"""Lagrangian persistence: optical-flow motion and semi-Lagrangian advection of the last observed frame (pysteps)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from torch import Tensor

from nowcast_pl.models.baselines.rain_rate import check_units, rain_rate_db, to_physical, to_rain_rate, to_unit_interval
from nowcast_pl.pysteps_import import import_pysteps
from nowcast_pl.tasks.base import NowcastTask

MotionMethod = Literal["lucaskanade", "vet"]


def estimate_motion(decibels: np.ndarray, method: MotionMethod) -> np.ndarray:
    """(T, H, W) dB rain rate → (2, H, W) advection field (x, y) in pixels per time step (pysteps ``motion``).

    ``lucaskanade``: dense Lucas–Kanade (Lucas & Kanade 1981; pysteps ``dense_lucaskanade``, needs OpenCV);
    ``vet``: variational echo tracking (Laroche & Zawadzki 1995) on the last 3 frames, much slower on CPU
    (docs/baselines.md).
    """
    motion = import_pysteps("pysteps.motion")
    if method == "vet":
        return np.asarray(motion.get_method("vet")(decibels[-3:]))
    return np.asarray(motion.get_method("lucaskanade")(decibels, verbose=False))


class ExtrapolationTask(NowcastTask):
    """Extrapolation nowcast: the last observed frame advected along the motion of the observed frames.

    Per window: frames in store units → rain rate (:mod:`nowcast_pl.models.baselines.rain_rate`) → dB → motion field
    (:func:`estimate_motion`) → semi-Lagrangian advection (Germann & Zawadzki 2002; pysteps
    ``extrapolation.semilagrangian``) of the last frame in store units for every lead time. Echo advected in
    from outside the domain is "no echo" (the low end of ``value_range``). Nothing to train.

    Args:
        motion_method: ``"lucaskanade"`` (default) or ``"vet"``.
        **kwargs: :class:`NowcastTask` arguments (frames, thresholds, protocol ...).

    Raises:
        ValueError: if the store's units cannot be converted to rain rate, or ``motion_method`` is unknown.
    """

    trainable = False

    def __init__(self, *, motion_method: MotionMethod = "lucaskanade", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if motion_method not in ("lucaskanade", "vet"):
            raise ValueError(f"motion_method={motion_method!r} is not one of ['lucaskanade', 'vet']")
        check_units(self.hparams.units, type(self).__name__)
        self.motion_method = motion_method

    def forecast(self, inputs: Tensor) -> Tensor:
        """(B, T_in, 1, H, W) in [0, 1] → (B, T_out, 1, H, W) in [0, 1]."""
        observed = to_physical(inputs[:, :, 0], self.value_range)
        rows = [self._extrapolate(frames) for frames in observed]
        return to_unit_interval(np.stack(rows)[:, :, None], self.value_range, inputs)

    def _extrapolate(self, frames: np.ndarray) -> np.ndarray:
        """(T_in, H, W) store units → (T_out, H, W) store units."""
        rate = to_rain_rate(frames, self.hparams.units, self.hparams.time_step_minutes)
        velocity = estimate_motion(rain_rate_db(rate), self.motion_method)
        semilagrangian = import_pysteps("pysteps.extrapolation.semilagrangian")
        no_echo = self.value_range[0]
        advected = semilagrangian.extrapolate(frames[-1], velocity, self.out_frames, outval=no_echo)
        return np.nan_to_num(advected, nan=no_echo)

    def configure_optimizers(self) -> None:
        return None

    def forward(self, inputs: Tensor) -> Tensor:
        return self.forecast(inputs)

