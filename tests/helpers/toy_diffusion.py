"""A minimal conditional diffusion task for testing the stochastic-forecast contract on CPU in seconds.

Two convolutions predict the v-target of the future frames from the noisy frames, the observed frames and
the timestep. It is not a model anyone should use; it exercises the same path as RainDiff and STLDM:
``training_loss`` through the core objectives, ``forecast_rows`` through :meth:`DiffusionTask.sample_from_noise`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from nowcast_pl.diffusion import diffusion_loss, q_sample, x0_denoiser
from nowcast_pl.tasks.diffusion import DiffusionTask


class ToyDiffusionTask(DiffusionTask):
    """Args: width: hidden channels; **kwargs: :class:`DiffusionTask` arguments."""

    def __init__(self, *, width: int = 8, timesteps: int = 50, **kwargs: Any) -> None:
        super().__init__(timesteps=timesteps, **kwargs)
        channels = self.out_frames + self.in_frames + 1
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(2, width), nn.SiLU(),
                                 nn.Conv2d(width, self.out_frames, 3, padding=1))
        self.network_calls = 0

    def network(self, x_t: Tensor, t: Tensor, observed: Tensor) -> Tensor:
        """(R, T_out, 1, H, W) noisy frames, (R,) steps, (R, T_in, 1, H, W) in [-1, 1] → v prediction."""
        self.network_calls += 1
        time = (t.float() / self.timesteps)[:, None, None, None].expand(-1, 1, *x_t.shape[-2:])
        return self.net(torch.cat([x_t[:, :, 0], observed[:, :, 0], time], dim=1))[:, :, None]

    def training_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x0 = batch["targets"] * 2 - 1
        t = torch.randint(0, self.timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = q_sample(x0, t, noise, self.alphas_cumprod)
        output = self.network(x_t, t, batch["inputs"] * 2 - 1)
        loss = diffusion_loss(output, x0, noise, t, self.alphas_cumprod, objective=self.hparams.objective,
                              weighting=self.hparams.loss_weighting)
        return {"loss": loss}

    def forecast_rows(self, inputs: Tensor, generators: list[torch.Generator]) -> Tensor:
        observed = inputs * 2 - 1
        denoiser = x0_denoiser(lambda x, t: self.network(x, t, observed), self.alphas_cumprod,
                               self.hparams.objective)
        shape = (inputs.shape[0], self.out_frames, 1, *inputs.shape[-2:])
        return (self.sample_from_noise(denoiser, shape, generators, clip=(-1.0, 1.0)) + 1) / 2
