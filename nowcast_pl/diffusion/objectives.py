"""Forward process, prediction targets, conversions between them, and the training loss.

x_t = α_t x0 + σ_t ε with α_t = sqrt(ᾱ_t), σ_t = sqrt(1 - ᾱ_t) (Ho et al. 2020, eq. 4). A network predicts
one of ε ("eps", Ho et al. 2020), x0 ("x0") or v = α_t ε - σ_t x0 ("v", Salimans & Ho 2022, Sec. 4 and
App. D); the three are linear in each other given (x_t, t), so every conversion here is exact.

Shapes: data tensors ``(B, ...)`` of any trailing shape; ``t`` int64 ``(B,)`` in 0..T-1; ``ac`` (ᾱ) float64
``(T,)``. Coefficients are gathered in float64 and cast to the data dtype and device.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Objective = Literal["eps", "x0", "v"]
Weighting = Literal["official", "plain"]
OBJECTIVES = ("eps", "x0", "v")


def _scales(t: Tensor, ac: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """(α_t, σ_t) gathered per row and shaped ``(B, 1, ..., 1)`` to broadcast against ``like``."""
    alpha_bar = ac.to(device=like.device, dtype=torch.float64)[t.to(like.device)]
    view = (-1,) + (1,) * (like.dim() - 1)
    alpha = alpha_bar.sqrt().view(view).to(like.dtype)
    sigma = (1.0 - alpha_bar).sqrt().view(view).to(like.dtype)
    return alpha, sigma


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown diffusion objective {objective!r}; choose one of {list(OBJECTIVES)}")


def q_sample(x0: Tensor, t: Tensor, noise: Tensor, alphas_cumprod: Tensor) -> Tensor:
    """Diffuse clean data: x_t = α_t x0 + σ_t ε (Ho et al. 2020, eq. 4). ``(B, ...)`` -> ``(B, ...)``."""
    alpha, sigma = _scales(t, alphas_cumprod, x0)
    return alpha * x0 + sigma * noise


def x0_from_eps(x_t: Tensor, t: Tensor, eps: Tensor, ac: Tensor) -> Tensor:
    """x0 = (x_t - σ_t ε) / α_t (Ho et al. 2020, eq. 15)."""
    alpha, sigma = _scales(t, ac, x_t)
    return (x_t - sigma * eps) / alpha


def eps_from_x0(x_t: Tensor, t: Tensor, x0: Tensor, ac: Tensor) -> Tensor:
    """ε = (x_t - α_t x0) / σ_t (Song et al. 2021, eq. 12 "predicted noise"); undefined where σ_t = 0."""
    alpha, sigma = _scales(t, ac, x_t)
    return (x_t - alpha * x0) / sigma


def v_target(x0: Tensor, eps: Tensor, t: Tensor, ac: Tensor) -> Tensor:
    """v = α_t ε - σ_t x0 (Salimans & Ho 2022, App. D)."""
    alpha, sigma = _scales(t, ac, x0)
    return alpha * eps - sigma * x0


def x0_from_v(x_t: Tensor, t: Tensor, v: Tensor, ac: Tensor) -> Tensor:
    """x0 = α_t x_t - σ_t v (Salimans & Ho 2022, App. D)."""
    alpha, sigma = _scales(t, ac, x_t)
    return alpha * x_t - sigma * v


def eps_from_v(x_t: Tensor, t: Tensor, v: Tensor, ac: Tensor) -> Tensor:
    """ε = σ_t x_t + α_t v (Salimans & Ho 2022, App. D)."""
    alpha, sigma = _scales(t, ac, x_t)
    return sigma * x_t + alpha * v


def model_output_to_x0(output: Tensor, x_t: Tensor, t: Tensor, ac: Tensor, objective: Objective) -> Tensor:
    """The x0 estimate implied by a network ``output`` under ``objective``. ``(B, ...)`` -> ``(B, ...)``."""
    _check_objective(objective)
    if objective == "eps":
        return x0_from_eps(x_t, t, output, ac)
    if objective == "v":
        return x0_from_v(x_t, t, output, ac)
    return output


def target_for(objective: Objective, x0: Tensor, eps: Tensor, t: Tensor, ac: Tensor) -> Tensor:
    """The regression target of ``objective`` for clean data ``x0`` diffused with noise ``eps`` at ``t``."""
    _check_objective(objective)
    if objective == "eps":
        return eps
    if objective == "v":
        return v_target(x0, eps, t, ac)
    return x0


def loss_weight(t: Tensor, ac: Tensor, objective: Objective, weighting: Weighting) -> Tensor:
    """Per-sample loss weight, float64 ``(B,)`` on ``t``'s device.

    "official" is lucidrains' weighting without min-SNR clipping (Hang et al. 2023, eq. 5 with γ = ∞), used by
    both official codes: eps -> 1, x0 -> SNR_t, v -> SNR_t/(SNR_t + 1) = ᾱ_t, where SNR_t = ᾱ_t/(1 - ᾱ_t).
    With these weights every objective's loss equals the MSE of the ε̂ implied by its prediction, since
    ε̂ - ε = α_t (v̂ - v) = -(α_t/σ_t)(x̂0 - x0) (Salimans & Ho 2022, Sec. 4). "plain" is 1 for every objective.
    """
    _check_objective(objective)
    if weighting not in ("official", "plain"):
        raise ValueError(f"unknown loss weighting {weighting!r}; choose 'official' or 'plain'")
    alpha_bar = ac.to(device=t.device, dtype=torch.float64)[t]
    if weighting == "plain" or objective == "eps":
        return torch.ones_like(alpha_bar)
    snr = alpha_bar / (1.0 - alpha_bar)
    return snr if objective == "x0" else snr / (snr + 1.0)


def diffusion_loss(output: Tensor, x0: Tensor, eps: Tensor, t: Tensor, ac: Tensor, *, objective: Objective,
                   weighting: Weighting, mask: Tensor | None = None) -> Tensor:
    """Weighted denoising loss (Ho et al. 2020, eq. 14, with the weights of :func:`loss_weight`).

    Per sample: mean squared error between ``output`` and the objective's target over all non-batch elements
    (only where ``mask`` is true/non-zero, if given), times the weight; then the mean over the batch.

    Args:
        output: network prediction ``(B, ...)``.
        x0: clean data ``(B, ...)``; eps: the noise used to make x_t ``(B, ...)``; t: int64 ``(B,)``.
        mask: optional ``(B, ...)`` mask broadcastable to ``output``; a sample with no valid element adds 0.

    Returns: scalar tensor in ``output``'s dtype.
    """
    squared_error = (output - target_for(objective, x0, eps, t, ac)) ** 2
    if mask is None:
        per_sample = squared_error.flatten(1).mean(dim=1)
    else:
        weights = mask.to(squared_error.dtype).expand_as(squared_error)
        per_sample = (squared_error * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp(min=1.0)
    weight = loss_weight(t, ac, objective, weighting).to(device=output.device, dtype=output.dtype)
    return (per_sample * weight).mean()
