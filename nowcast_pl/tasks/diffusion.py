"""``DiffusionTask``: the base of the diffusion nowcasting models (RainDiff, DiffCast, STLDM).

It fixes the forward process (noise schedule, number of training steps, prediction target and loss
weighting; saved with the model) and owns the sampler settings (:class:`SamplerSettings`), run-time choices that
:attr:`DiffusionTask.runtime_settings` declares, so checkpoints never save them: ``nowcast test ...
--model.init_args.sampler dpmpp_2m --model.init_args.sampling_steps 20`` samples a model trained with any settings
that way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import Tensor

from nowcast_pl import diffusion
from nowcast_pl.diffusion import SAMPLERS, make_schedule
from nowcast_pl.tasks.base import NowcastTask


@dataclass
class SamplerSettings:
    """How a diffusion task samples; run-time choices, set from the task's flat init arguments.

    Args:
        sampler: ``"ddim"``, ``"ddpm"`` or ``"dpmpp_2m"``.
        sampling_steps: denoiser evaluations of DDIM / DPM-Solver++ (DDPM always takes T).
        eta: DDIM stochasticity (0 = deterministic given the initial noise).
        guidance_scale: classifier-free guidance weight w (0 = conditional model only).
    """

    sampler: str = "ddim"
    sampling_steps: int = 20
    eta: float = 0.0
    guidance_scale: float = 0.0

    def check(self, *, timesteps: int, supports_guidance: bool, task: str) -> None:
        """Raise ValueError naming the init argument when a setting does not fit a model of ``timesteps``."""
        if self.sampler not in SAMPLERS:
            raise ValueError(f"model.init_args.sampler={self.sampler!r} is not one of {sorted(SAMPLERS)}")
        if not 1 <= self.sampling_steps <= timesteps:
            raise ValueError(f"model.init_args.sampling_steps must be in [1, timesteps={timesteps}], "
                             f"got {self.sampling_steps}")
        if self.guidance_scale and not supports_guidance:
            raise ValueError(f"{task} is not trained with condition dropout: "
                             "set model.init_args.guidance_scale to 0")


class DiffusionTask(NowcastTask):
    """A stochastic task whose forecasts come from a core sampler (:mod:`nowcast_pl.diffusion`).

    Subclasses build their networks, implement ``training_loss`` and ``forecast_rows`` and call
    :meth:`sample_from_noise` with a denoiser. Models trained with condition dropout set the class attribute
    ``supports_guidance = True``.

    Args:
        timesteps: T, the number of discrete diffusion steps of training.
        noise_schedule: ``"sigmoid"`` (both papers), ``"cosine"`` or ``"linear"``.
        objective: the network's prediction target, ``"v"`` (both papers), ``"eps"`` or ``"x0"``.
        loss_weighting: ``"official"`` (for v: SNR/(SNR+1) = ᾱ_t, as both official codes) or ``"plain"``.
        sampler, sampling_steps, eta, guidance_scale: run-time; the fields of :class:`SamplerSettings`, held
            in :attr:`sampling`.
        **kwargs: :class:`NowcastTask` arguments.
    """

    stochastic = True
    accepts_row_noise = True
    supports_guidance = False
    runtime_settings = NowcastTask.runtime_settings + tuple(f.name for f in fields(SamplerSettings))

    def __init__(
        self,
        *,
        timesteps: int = 1000,
        noise_schedule: Literal["sigmoid", "cosine", "linear"] = "sigmoid",
        objective: Literal["v", "eps", "x0"] = "v",
        loss_weighting: Literal["official", "plain"] = "official",
        sampler: str = "ddim",
        sampling_steps: int = 20,
        eta: float = 0.0,
        guidance_scale: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sampling = SamplerSettings(sampler, sampling_steps, eta, guidance_scale)
        self.sampling.check(timesteps=timesteps, supports_guidance=self.supports_guidance, task=type(self).__name__)
        self.register_buffer("alphas_cumprod", make_schedule(noise_schedule, timesteps), persistent=False)

    @property
    def timesteps(self) -> int:
        """T, the number of training diffusion steps."""
        return int(self.alphas_cumprod.numel())

    def sample_from_noise(
        self,
        denoiser: Callable[[Tensor, Tensor], Tensor],
        shape: Sequence[int],
        generators: Sequence[torch.Generator],
        *,
        clip: tuple[float, float] | None = None,
        x_T: Tensor | None = None,
    ) -> Tensor:
        """Run the configured sampler: ``denoiser(x_t, t) -> x̂0`` from noise of ``shape`` to a sample.

        Args:
            denoiser: see :func:`nowcast_pl.diffusion.x0_denoiser` to build one from a network.
            shape: (R, ...) sample shape; row i draws its noise from ``generators[i]``.
            generators: one CPU generator per row.
            clip: clamp x̂0 to this range at every step (RainDiff: (-1, 1)).
            x_T: initial noise instead of drawing it.
        """
        settings = self.sampling
        return diffusion.sample(settings.sampler, denoiser, tuple(shape), self.alphas_cumprod,
                               steps=settings.sampling_steps, eta=settings.eta, clip=clip, generator=list(generators),
                               x_T=x_T, device=self.device, dtype=torch.float32)
