"""Progressive distillation targets (Salimans & Ho 2022, Alg. 2), with classifier-free guidance folded into the
teacher (Meng et al. 2023, "On distillation of guided diffusion models").

A student that takes N DDIM steps learns, at each time of its grid, the one step that reproduces two DDIM steps
of its teacher on the grid of 2N steps: from z_t the teacher goes t -> t' -> t''; the student's x0 target x̃ is
the clean estimate whose DDIM step from z_t lands on the teacher's z_t'' (Salimans & Ho 2022, Alg. 2):

    x̃ = (z_t'' - (σ_t''/σ_t) z_t) / (α_t'' - (σ_t''/σ_t) α_t),

which is the teacher's last x̂0 when t'' = -1 (clean data, σ = 0). With a guided teacher
(:func:`nowcast_pl.diffusion.guided`) the student learns the guided sampler in one call per step.

Shapes: data ``(B, ...)``; times int64 ``(B,)`` in -1..T-1 (-1 = clean data, ᾱ = 1); ``ac`` (ᾱ) float64 ``(T,)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nowcast_pl.diffusion.samplers import Clip, Denoiser, ddim_timesteps


def _scales_at(t: Tensor, ac: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """(α_t, σ_t) per row, shaped ``(B, 1, ..., 1)`` like ``like``; t = -1 gives (1, 0)."""
    ac = ac.to(device=like.device, dtype=torch.float64)
    t = t.to(like.device)
    alpha_bar = torch.where(t < 0, torch.ones_like(ac[0]), ac[t.clamp(min=0)])
    view = (-1,) + (1,) * (like.dim() - 1)
    return alpha_bar.sqrt().view(view).to(like.dtype), (1.0 - alpha_bar).sqrt().view(view).to(like.dtype)


def ddim_step(x0: Tensor, x_t: Tensor, t: Tensor, s: Tensor, ac: Tensor) -> Tensor:
    """Deterministic DDIM step from time t to time s < t given the estimate x̂0 (Song et al. 2021, eq. 12, η = 0):
    ε̂ = (x_t - α_t x̂0)/σ_t, x_s = α_s x̂0 + σ_s ε̂ (x̂0 itself where s = -1). Per-row times ``(B,)``, t >= 0."""
    alpha_t, sigma_t = _scales_at(t, ac, x_t)
    alpha_s, sigma_s = _scales_at(s, ac, x_t)
    eps = (x_t - alpha_t * x0) / sigma_t
    return alpha_s * x0 + sigma_s * eps


def progressive_times(T: int, student_steps: int, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The times (t, t', t'') of student step ``index`` (int64 ``(B,)`` in 0..student_steps-1, 0 = the noisiest).

    t -> t'' is a step of the student's DDIM grid ``ddim_timesteps(T, student_steps)`` (the grid its sampler
    uses at run time) and t' is the teacher's intermediate time on ``ddim_timesteps(T, 2 * student_steps)``.

    Returns: three int64 ``(B,)`` tensors on ``index``'s device, t > t' > t'' >= -1.
    """
    if not 1 <= 2 * student_steps <= T:
        raise ValueError(f"a student of {student_steps} steps needs a teacher of {2 * student_steps} steps, "
                         f"more than the T={T} diffusion steps")
    if index.min() < 0 or index.max() >= student_steps:
        raise ValueError(f"student step index must be in 0..{student_steps - 1}")
    student = torch.tensor(ddim_timesteps(T, student_steps), device=index.device)
    teacher = torch.tensor(ddim_timesteps(T, 2 * student_steps), device=index.device)
    return student[index], teacher[2 * index + 1], student[index + 1]


def student_x0_target(x_t: Tensor, x_next: Tensor, t: Tensor, t_next: Tensor, ac: Tensor) -> Tensor:
    """The x̂0 whose DDIM step takes ``x_t`` at t to ``x_next`` at t'' (Salimans & Ho 2022, Alg. 2)."""
    alpha_t, sigma_t = _scales_at(t, ac, x_t)
    alpha_next, sigma_next = _scales_at(t_next, ac, x_t)
    ratio = sigma_next / sigma_t
    return (x_next - ratio * x_t) / (alpha_next - ratio * alpha_t)


@torch.no_grad()
def progressive_target(teacher: Denoiser, x_t: Tensor, t: Tensor, t_mid: Tensor, t_next: Tensor, ac: Tensor, *,
                       clip: Clip = None) -> Tensor:
    """The student's x0 target x̃ at ``x_t``: two teacher DDIM steps t -> t' -> t'', then
    :func:`student_x0_target` (Salimans & Ho 2022, Alg. 2).

    Args:
        teacher: denoiser ``(x_t, t) -> x̂0`` (guided or not).
        x_t: noisy data ``(B, ...)`` at times ``t``; t, t_mid, t_next: int64 ``(B,)`` from :func:`progressive_times`.
        clip: clamp each teacher x̂0 to this range, as its sampler does (RainDiff: (-1, 1)).

    Returns: x̃ ``(B, ...)``, without gradient.
    """
    def denoise(x: Tensor, time: Tensor) -> Tensor:
        x0 = teacher(x, time)
        return x0 if clip is None else x0.clamp(*clip)

    x_mid = ddim_step(denoise(x_t, t), x_t, t, t_mid, ac)
    x_next = ddim_step(denoise(x_mid, t_mid), x_mid, t_mid, t_next, ac)
    return student_x0_target(x_t, x_next, t, t_next, ac)
