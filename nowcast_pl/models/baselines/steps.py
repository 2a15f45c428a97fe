"""STEPS ensemble nowcast (Bowler et al. 2006; Seed et al. 2013) through pysteps, one member per batch row."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nowcast_pl.models.baselines.extrapolation import MotionMethod, estimate_motion
from nowcast_pl.models.baselines.rain_rate import (
    RAIN_THRESHOLD_MM_H,
    ZERO_VALUE_DB,
    check_units,
    from_rain_rate,
    rain_rate_db,
    rain_rate_from_db,
    to_physical,
    to_rain_rate,
    to_unit_interval,
)
from nowcast_pl.pysteps_import import import_pysteps
from nowcast_pl.tasks.base import NowcastTask

AR_ORDER = 2
SEED_BOUND = 2**31 - 1


def row_seeds(generators: Sequence[torch.Generator]) -> list[int]:
    """One integer seed in [0, 2³¹ − 1) per row, drawn from that row's generator."""
    return [int(torch.randint(0, SEED_BOUND, (1,), generator=generator)) for generator in generators]


class StepsTask(NowcastTask):
    """Short-Term Ensemble Prediction System: a stochastic, scale-dependent extrapolation nowcast.

    Per window and member: frames in store units → rain rate → dB (:mod:`nowcast_pl.models.baselines.rain_rate`) →
    Lucas–Kanade motion of all observed frames → pysteps ``nowcasts.steps.forecast`` on the last 3 frames
    (AR(2) per cascade level, nonparametric noise, CDF probability matching) → rain rate → store units,
    clipped to ``value_range``. Echo advected in from outside the domain is no rain. Nothing to train.

    Stochastic: :meth:`forecast_rows` draws row i's pysteps seed from ``generators[i]``, so a member depends only
    on its generator (reproducible, independent of batch composition); the ensemble's seed is the task's
    ``sampling_seed``.

    Args:
        cascade_levels: cascade levels of the FFT bandpass decomposition (pysteps default 6; use ≤ 4 below
            64 × 64 px).
        pixel_size_km: size of one (resized) pixel; with it, the rain mask grows incrementally and the motion
            field is perturbed (pysteps ``mask_method="incremental"``, ``vel_pert_method="bps"``, parameters of
            Bowler et al. 2006 fitted for 1 km/5 min), without it the observed mask is kept and motion is not
            perturbed.
        motion_method: ``"lucaskanade"`` or ``"vet"`` (see :func:`estimate_motion`).
        **kwargs: :class:`NowcastTask` arguments (frames, thresholds, protocol, eval_members ...).

    Raises:
        ValueError: if the store's units cannot be converted to rain rate or ``in_frames`` < 3.
    """

    trainable = False
    stochastic = True

    def __init__(
        self,
        *,
        cascade_levels: int = 6,
        pixel_size_km: float | None = None,
        motion_method: MotionMethod = "lucaskanade",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_units(self.hparams.units, type(self).__name__)
        if self.in_frames < AR_ORDER + 1:
            raise ValueError(f"STEPS needs in_frames >= {AR_ORDER + 1} (AR order {AR_ORDER}), got {self.in_frames}")
        self.cascade_levels, self.pixel_size_km = cascade_levels, pixel_size_km
        self.motion_method = motion_method

    def forecast_rows(self, inputs: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
        """One member per row; row i's randomness comes from ``generators[i]`` only."""
        if len(generators) != inputs.shape[0]:
            raise ValueError(f"need one generator per row: {inputs.shape[0]} rows, {len(generators)} generators")
        return self._forecast_with_seeds(inputs, row_seeds(generators))

    def _forecast_with_seeds(self, inputs: Tensor, seeds: Sequence[int]) -> Tensor:
        observed = to_physical(inputs[:, :, 0], self.value_range)
        rows = [self._member(frames, seed) for frames, seed in zip(observed, seeds, strict=True)]
        return to_unit_interval(np.stack(rows)[:, :, None], self.value_range, inputs)

    def _member(self, frames: np.ndarray, seed: int) -> np.ndarray:
        """(T_in, H, W) store units → one STEPS member (T_out, H, W) in store units."""
        units, step = self.hparams.units, self.hparams.time_step_minutes
        decibels = rain_rate_db(np.nan_to_num(to_rain_rate(frames, units, step), nan=0.0))
        low, high = self.value_range
        if not np.any(decibels[-AR_ORDER - 1 :] > ZERO_VALUE_DB):
            return np.full((self.out_frames, *frames.shape[1:]), low)  # no rain to extrapolate
        nowcasts = import_pysteps("pysteps.nowcasts")
        velocity = estimate_motion(decibels, self.motion_method)
        incremental = self.pixel_size_km is not None
        with contextlib.redirect_stdout(io.StringIO()):  # pysteps prints its settings and progress
            member = nowcasts.get_method("steps")(
                decibels[-AR_ORDER - 1 :], velocity, self.out_frames, n_ens_members=1,
                n_cascade_levels=self.cascade_levels, precip_thr=10.0 * np.log10(RAIN_THRESHOLD_MM_H),
                kmperpixel=self.pixel_size_km, timestep=step, ar_order=AR_ORDER,
                noise_method="nonparametric", vel_pert_method="bps" if incremental else None,
                mask_method="incremental" if incremental else "obs", seed=seed, num_workers=1,
            )[0]
        values = from_rain_rate(rain_rate_from_db(np.nan_to_num(member, nan=ZERO_VALUE_DB)), units, step)
        return np.clip(values, low, high)

    def configure_optimizers(self) -> None:
        return None

    def forward(self, inputs: Tensor) -> Tensor:
        return self.forecast(inputs)
