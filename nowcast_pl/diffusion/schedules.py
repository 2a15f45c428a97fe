"""Noise schedules: the cumulative signal fraction ᾱ_t of a discrete diffusion process.

Every schedule returns ``alphas_cumprod`` = ᾱ, a float64 tensor of shape ``(T,)`` indexed by the discrete
time t = 0..T-1, with ᾱ_t = prod_{s<=t} (1 - β_s) (Ho et al. 2020, eq. 4). The signal and noise scales
of x_t = α_t x0 + σ_t ε are α_t = sqrt(ᾱ_t) and σ_t = sqrt(1 - ᾱ_t).

The continuous-time schedules (cosine, sigmoid) are turned into betas β_t = 1 - ᾱ(t+1)/ᾱ(t) on the grid
t/T and clipped to [0, 0.999] (Nichol & Dhariwal 2021, Sec. 3.2), as lucidrains/denoising-diffusion-pytorch
and both official RainDiff and STLDM codes do.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

ScheduleName = Literal["linear", "cosine", "sigmoid"]
MAX_BETA = 0.999


def _check_length(T: int) -> None:
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"diffusion timesteps T must be a positive int, got {T!r}")


def _alphas_cumprod_from_betas(betas: Tensor) -> Tensor:
    return torch.cumprod(1.0 - betas, dim=0)


def _betas_from_continuous(alpha_bar: Tensor) -> Tensor:
    """Betas of a continuous ᾱ(u) sampled at u = 0, 1/T, ..., 1 (shape (T+1,)), clipped to [0, 0.999]."""
    alpha_bar = alpha_bar / alpha_bar[0]
    return (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(0.0, MAX_BETA)


def linear_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> Tensor:
    """Linear betas of DDPM (Ho et al. 2020, Sec. 4), scaled by 1000/T so any T spans the same noise range.

    Betas are clipped to 0.999, which only matters for T < 21 (where the scaled β_end would exceed 1).

    Returns: ᾱ, ``(T,)`` float64.
    """
    _check_length(T)
    scale = 1000.0 / T
    betas = torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)
    return _alphas_cumprod_from_betas(betas.clamp(0.0, MAX_BETA))


def cosine_schedule(T: int, s: float = 0.008) -> Tensor:
    """Cosine schedule ᾱ(u) = cos²((u + s)/(1 + s)·π/2) (Nichol & Dhariwal 2021, eq. 17), betas clipped to 0.999.

    Returns: ᾱ, ``(T,)`` float64.
    """
    _check_length(T)
    u = torch.linspace(0.0, 1.0, T + 1, dtype=torch.float64)
    alpha_bar = torch.cos((u + s) / (1.0 + s) * math.pi * 0.5) ** 2
    return _alphas_cumprod_from_betas(_betas_from_continuous(alpha_bar))


def sigmoid_schedule(T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Tensor:
    """Sigmoid schedule of Jabri et al. 2022 (Alg. 1), used by both official RainDiff and STLDM codes.

    ᾱ(u) = (sigmoid(end/τ) - sigmoid((u(end - start) + start)/τ)) / (sigmoid(end/τ) - sigmoid(start/τ)),
    then betas clipped to [0, 0.999]. With the defaults, T=1000 gives β_0 ≈ 3.0e-4, ᾱ_499 ≈ 0.50,
    ᾱ_999 ≈ 3.0e-7, and T=50 gives ᾱ_0 = 0.99367, ᾱ_24 = 0.5, ᾱ_49 ≈ 6.3e-6.

    Returns: ᾱ, ``(T,)`` float64.
    """
    _check_length(T)
    if not end > start or tau <= 0:
        raise ValueError(f"sigmoid_schedule needs end > start and tau > 0, got start={start}, end={end}, tau={tau}")
    u = torch.linspace(0.0, 1.0, T + 1, dtype=torch.float64)
    v_start, v_end = (torch.tensor([start, end], dtype=torch.float64) / tau).sigmoid()
    alpha_bar = (v_end - ((u * (end - start) + start) / tau).sigmoid()) / (v_end - v_start)
    return _alphas_cumprod_from_betas(_betas_from_continuous(alpha_bar))


SCHEDULES = {"linear": linear_schedule, "cosine": cosine_schedule, "sigmoid": sigmoid_schedule}


def make_schedule(name: ScheduleName, T: int, **kwargs: float) -> Tensor:
    """ᾱ of the schedule called ``name`` with ``T`` steps; ``kwargs`` go to that schedule's function."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](T, **kwargs)
