"""Samplers: short pure functions of a denoiser, in the style of k-diffusion.

A **denoiser** maps ``(x_t (B, ...), t int64 (B,)) -> x̂0 (B, ...)``, the model's estimate of the clean
data (build one from a network with :func:`x0_denoiser`). Time is discrete, t = 0..T-1; in a time grid
t = -1 stands for clean data (ᾱ = 1). All noise goes through :func:`~nowcast_pl.diffusion.noise.randn_like_rows`,
so ``generator`` may be ``None``, one ``torch.Generator``, or one generator per batch row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
from torch import Tensor

from nowcast_pl.diffusion.noise import Generators, randn_like_rows
from nowcast_pl.diffusion.objectives import Objective, eps_from_x0, model_output_to_x0

Denoiser = Callable[[Tensor, Tensor], Tensor]
Clip = tuple[float, float] | None


def x0_denoiser(network_fn: Callable[[Tensor, Tensor], Tensor], ac: Tensor, objective: Objective) -> Denoiser:
    """Wrap ``network_fn(x_t, t) -> output`` (ε, x0 or v under ``objective``) as a denoiser returning x̂0."""
    def denoise(x_t: Tensor, t: Tensor) -> Tensor:
        return model_output_to_x0(network_fn(x_t, t), x_t, t, ac, objective)
    return denoise


def _check_steps(T: int, steps: int | None) -> int:
    if steps is None or int(steps) != steps or not 1 <= steps <= T:
        raise ValueError(f"sampling steps must be an int in 1..T={T}, got {steps!r}")
    return int(steps)


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """Official DDIM grid: ``linspace(-1, T-1, steps+1)`` in float32, truncated to int, reversed.

    E.g. T=50, steps=20 -> [49, 46, 44, ..., 4, 1, -1]; T=1000, steps=250 -> [999, 995, ..., 3, -1].
    Each consecutive pair (t, t_next) is one denoiser call.
    """
    steps = _check_steps(T, steps)
    times = torch.linspace(-1, T - 1, steps + 1, dtype=torch.float32).int().tolist()
    return list(reversed(times))


def dpmpp_timesteps(ac: Tensor, steps: int) -> list[int]:
    """DPM-Solver++ grid: uniform in log-SNR λ_t = log(α_t/σ_t), projected onto distinct integer times.

    The grid is T-1, then ``steps - 1`` times whose λ is closest to a uniform grid from λ_{T-2} to λ_0 (the
    spacing Lu et al. 2022 recommend for pixel-space models), then -1 (clean data). T-1 is its own step
    because the clipped last beta (0.999) puts λ_{T-1} far below λ_{T-2}. Ending the solver at t = 0 keeps
    the final denoising jump as small as the schedule allows. Each pair is one denoiser call.
    """
    T = len(ac)
    steps = _check_steps(T, steps)
    if steps == 1:
        return [T - 1, -1]
    log_snr = 0.5 * torch.log(ac / (1.0 - ac)).flip(0)  # increasing in flipped index T-1-t
    targets = torch.linspace(log_snr[1].item(), log_snr[-1].item(), steps - 1, dtype=torch.float64)
    if steps == 2:
        targets = log_snr[-1:]
    above = torch.bucketize(targets, log_snr).clamp(1, T - 1)
    closer_below = (targets - log_snr[above - 1]) < (log_snr[above] - targets)
    nearest = (T - 1 - (above - closer_below.long())).tolist()
    times = [T - 1]
    for i, t in enumerate(nearest):  # keep times distinct and leave room for the rest down to t = 0
        times.append(max(min(t, times[-1] - 1), steps - 2 - i))
    return times + [-1]


def _initial_noise(shape: Sequence[int] | None, generator: Generators, x_T: Tensor | None,
                   device: torch.device | str | None, dtype: torch.dtype) -> Tensor:
    if x_T is None:
        if shape is None:
            raise ValueError("a sampler needs the sample shape (B, ...) or a starting noise x_T")
        return randn_like_rows(shape, generator, device, dtype)
    if shape is not None and tuple(x_T.shape) != tuple(shape):
        raise ValueError(f"x_T has shape {tuple(x_T.shape)} but the sample shape is {tuple(shape)}")
    return x_T


def _times(value: int, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), value, dtype=torch.long, device=x.device)


def _denoise(denoiser: Denoiser, x: Tensor, t: int, clip: Clip) -> Tensor:
    x0 = denoiser(x, _times(t, x))
    return x0 if clip is None else x0.clamp(*clip)


def ddim_sample(denoiser: Denoiser, shape: Sequence[int], ac: Tensor, *, steps: int, eta: float = 0.0,
                clip: Clip = None, generator: Generators = None, x_T: Tensor | None = None,
                device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12) on the official grid :func:`ddim_timesteps`.

    Per pair (t, s): x̂0 = D(x_t, t), optionally clamped to ``clip``; ε̂ = (x_t - α_t x̂0)/σ_t (re-derived from
    the clamped x̂0, as the official RainDiff code does); σ = η sqrt((1 - ᾱ_t/ᾱ_s)(1 - ᾱ_s)/(1 - ᾱ_t));
    x_s = sqrt(ᾱ_s) x̂0 + sqrt(1 - ᾱ_s - σ²) ε̂ + σ z. The last pair (t, -1) returns x̂0. ``steps`` denoiser
    calls; η = 0 is deterministic given x_T, η = 1 is DDPM-like.

    Returns: x0 sample ``shape`` = ``(B, ...)`` (or ``x_T``'s shape and dtype if given).
    """
    ac = ac.to(torch.float64).cpu()
    x = _initial_noise(shape, generator, x_T, device, dtype)
    times = ddim_timesteps(len(ac), steps)
    for t, t_next in pairwise(times):
        x0 = _denoise(denoiser, x, t, clip)
        if t_next < 0:
            return x0
        eps = eps_from_x0(x, _times(t, x), x0, ac)
        a, a_next = ac[t].item(), ac[t_next].item()
        sigma = eta * math.sqrt((1 - a / a_next) * (1 - a_next) / (1 - a))
        x = x0 * math.sqrt(a_next) + math.sqrt(1 - a_next - sigma**2) * eps
        if sigma > 0:
            x = x + sigma * randn_like_rows(x.shape, generator, x.device, x.dtype)
    return x0


def ddpm_sample(denoiser: Denoiser, shape: Sequence[int], ac: Tensor, *, clip: Clip = None,
                generator: Generators = None, x_T: Tensor | None = None,
                device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Ancestral DDPM sampling through all T steps (Ho et al. 2020, Alg. 2 in the x̂0 form of eqs. 6-7).

    x_{t-1} = μ̃_t(x_t, x̂0) + sqrt(β̃_t) z with μ̃_t = sqrt(ᾱ_{t-1}) β_t/(1 - ᾱ_t) x̂0
    + sqrt(1 - β_t)(1 - ᾱ_{t-1})/(1 - ᾱ_t) x_t and β̃_t = β_t (1 - ᾱ_{t-1})/(1 - ᾱ_t); ᾱ_{-1} = 1, so the
    step at t = 0 returns x̂0 (no noise). T denoiser calls.

    Returns: x0 sample ``shape`` = ``(B, ...)``.
    """
    ac = ac.to(torch.float64).cpu()
    x = _initial_noise(shape, generator, x_T, device, dtype)
    for t in reversed(range(len(ac))):
        x0 = _denoise(denoiser, x, t, clip)
        a, a_prev = ac[t].item(), (ac[t - 1].item() if t > 0 else 1.0)
        beta = 1 - a / a_prev
        x = (math.sqrt(a_prev) * beta / (1 - a)) * x0 + (math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)) * x
        if t > 0:
            variance = beta * (1 - a_prev) / (1 - a)
            x = x + math.sqrt(variance) * randn_like_rows(x.shape, generator, x.device, x.dtype)
    return x


def dpmpp_2m_sample(denoiser: Denoiser, shape: Sequence[int], ac: Tensor, *, steps: int, clip: Clip = None,
                    generator: Generators = None, x_T: Tensor | None = None,
                    device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """DPM-Solver++(2M), the multistep second-order data-prediction solver (Lu et al. 2022, Alg. 2).

    With λ_t = log(α_t/σ_t) and h_i = λ_{t_i} - λ_{t_{i-1}} on the log-SNR grid :func:`dpmpp_timesteps`:
    x_{t_i} = (σ_{t_i}/σ_{t_{i-1}}) x_{t_{i-1}} - α_{t_i}(e^{-h_i} - 1) D_i, where D_1 = x̂0_1 (first order)
    and D_i = (1 + 1/(2 r_i)) x̂0_i - 1/(2 r_i) x̂0_{i-1}, r_i = h_{i-1}/h_i. The final step to clean data
    returns x̂0. ``steps`` denoiser calls, deterministic given x_T; ``clip`` clamps each x̂0 if given.

    Returns: x0 sample ``shape`` = ``(B, ...)``.
    """
    ac = ac.to(torch.float64).cpu()
    x = _initial_noise(shape, generator, x_T, device, dtype)
    times = dpmpp_timesteps(ac, steps)
    previous_x0, previous_h = None, None
    for t, t_next in pairwise(times):
        x0 = _denoise(denoiser, x, t, clip)
        if t_next < 0:
            return x0
        a, a_next = ac[t].item(), ac[t_next].item()
        h = 0.5 * (math.log(a_next / (1 - a_next)) - math.log(a / (1 - a)))
        direction = x0
        if previous_x0 is not None:
            half_inverse_ratio = h / (2 * previous_h)
            direction = (1 + half_inverse_ratio) * x0 - half_inverse_ratio * previous_x0
        x = math.sqrt((1 - a_next) / (1 - a)) * x - math.sqrt(a_next) * math.expm1(-h) * direction
        previous_x0, previous_h = x0, h
    return x0


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddim": ddim_sample, "ddpm": ddpm_sample, "dpmpp_2m": dpmpp_2m_sample}


def sample(name: str, denoiser: Denoiser, shape: Sequence[int], ac: Tensor, *, steps: int | None = None,
           eta: float = 0.0, clip: Clip = None, generator: Generators = None, x_T: Tensor | None = None,
           device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Run the sampler called ``name`` ("ddim", "ddpm", "dpmpp_2m"); settings it does not use are ignored
    (``steps`` by ddpm, ``eta`` by ddpm and dpmpp_2m)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    common = dict(clip=clip, generator=generator, x_T=x_T, device=device, dtype=dtype)
    if name == "ddim":
        return ddim_sample(denoiser, shape, ac, steps=steps, eta=eta, **common)
    if name == "dpmpp_2m":
        return dpmpp_2m_sample(denoiser, shape, ac, steps=steps, **common)
    return ddpm_sample(denoiser, shape, ac, **common)
