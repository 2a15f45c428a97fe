"""``DiffusionTask``: the base of the diffusion nowcasting models (RainDiff, DiffCast, STLDM).

It fixes the forward process (noise schedule, number of training steps, prediction target and loss
weighting; saved with the model) and carries the sampler settings, which are run-time choices (not saved in
checkpoints, see :data:`nowcast_pl.tasks.base.RUNTIME_SETTINGS`): ``nowcast test ... --model.init_args.sampler
dpmpp_2m --model.init_args.sampling_steps 20`` samples a model trained with any settings that way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from nowcast_pl.diffusion import SAMPLERS, make_schedule
from nowcast_pl.diffusion import sample as run_core_sampler
from nowcast_pl.tasks.base import NowcastTask


class DiffusionTask(NowcastTask):
    """A stochastic task whose forecasts come from a core sampler (:mod:`nowcast_pl.diffusion`).

    Subclasses build their networks, implement ``training_loss`` and ``forecast_rows`` and call
    :meth:`run_sampler` with a denoiser. Models trained with condition dropout set the class attribute
    ``supports_guidance = True``.

    Args:
        timesteps: T, the number of discrete diffusion steps of training.
        noise_schedule: ``"sigmoid"`` (both papers), ``"cosine"`` or ``"linear"``.
        objective: the network's prediction target, ``"v"`` (both papers), ``"eps"`` or ``"x0"``.
        loss_weighting: ``"official"`` (for v: SNR/(SNR+1) = ᾱ_t, as both official codes) or ``"plain"``.
        sampler: run-time; ``"ddim"``, ``"ddpm"`` or ``"dpmpp_2m"``.
        sampling_steps: run-time; denoiser evaluations of DDIM / DPM-Solver++ (DDPM always takes T).
        eta: run-time; DDIM stochasticity (0 = deterministic given the initial noise).
        guidance_scale: run-time; classifier-free guidance weight w (0 = conditional model only).
        **kwargs: :class:`NowcastTask` arguments.
    """

    stochastic = True
    supports_guidance = False

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
        if sampler not in SAMPLERS:
            raise ValueError(f"model.init_args.sampler={sampler!r} is not one of {sorted(SAMPLERS)}")
        if not 1 <= sampling_steps <= timesteps:
            raise ValueError(f"model.init_args.sampling_steps must be in [1, timesteps={timesteps}], "
                             f"got {sampling_steps}")
        if guidance_scale and not self.supports_guidance:
            raise ValueError(f"{type(self).__name__} is not trained with condition dropout: "
                             "set model.init_args.guidance_scale to 0")
        self.sampler, self.sampling_steps, self.eta = sampler, sampling_steps, eta
        self.guidance_scale = guidance_scale
        self.register_buffer("alphas_cumprod", make_schedule(noise_schedule, timesteps), persistent=False)

    @property
    def timesteps(self) -> int:
        """T, the number of training diffusion steps."""
        return int(self.alphas_cumprod.numel())

    def run_sampler(
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
        return run_core_sampler(self.sampler, denoiser, tuple(shape), self.alphas_cumprod,
                                steps=self.sampling_steps, eta=self.eta, clip=clip, generator=list(generators),
                                x_T=x_T, device=self.device, dtype=torch.float32)
