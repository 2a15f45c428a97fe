"""STLDM as a nowcasting task (Foo et al., "STLDM: Spatio-Temporal Latent Diffusion Model for Precipitation
Nowcasting", arXiv:2512.21118): VAE, Translator and latent diffusion trained together in one stage.

Training loss (Sec. 3.3; all weights configurable, 1 by default):

* ``vae``: ``MSE(D(z), F) + kl_weight * KL(q(z|F) || N(0, I))`` on all input and target frames F, z sampled;
* ``constraint`` L_C = ``||Y - Ȳ||²``: the decoded Translator estimate (from sampled latents) against the truth;
* ``diffusion``: v-prediction loss on the future latents (the detached encoder means), weighted ᾱ_t, with the
  condition (Translator mean) dropped for classifier-free guidance;
* ``prior``: KL(q(z_T | z_0) || N(0, I)) at the last step, which keeps the target latents diffusable.

Evaluation: the Translator gives a deterministic first estimate (the released code samples it; see
``sample_first_estimate``), then a core sampler draws the future latents with CFG, decoded by the VAE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from nowcast_pl.checkpoints import read_checkpoint
from nowcast_pl.diffusion import diffusion_loss, drop_condition, guided, q_sample, x0_denoiser
from nowcast_pl.diffusion.noise import randn_like_rows
from nowcast_pl.models.stldm.network import STLDM
from nowcast_pl.models.stldm.vae import kl_to_standard_normal, reparameterize
from nowcast_pl.tasks.base import Batch
from nowcast_pl.tasks.diffusion import DiffusionTask
from nowcast_pl.tasks.distillation import DenoisingProblem


@dataclass
class TrainingDraws:
    """All randomness of one training step, fixed for tests and the parity benchmark.

    Attributes:
        t: diffusion step per sample, int64 ``(B,)``.
        keep: 1 where the condition is kept, 0 where dropped (CFG), float ``(B,)``.
        noise_vae: ε of the VAE reparameterisation of all frames, ``(B, T_in + T_out, C', h, w)``.
        noise_in: ε of the Translator's sampled input latents, ``(B, T_in, C', h, w)``.
        noise_out: ε of the Translator's sampled output latents, ``(B, T_out, C', h, w)``.
        noise_diffusion: ε of the forward process, ``(B, T_out, C', h, w)``.
    """

    t: Tensor
    keep: Tensor
    noise_vae: Tensor
    noise_in: Tensor
    noise_out: Tensor
    noise_diffusion: Tensor


class STLDMTask(DiffusionTask):
    """STLDM, one stage, end to end (strategy C); strategies A/B freeze pre-trained parts.

    Args:
        latent_channels, vae_layers, translator_width, translator_depth, mlp_ratio, drop_path, unet_base,
            unet_mults, patch_size, groups, heads, dim_head: network sizes, see :class:`~nowcast_pl.models.stldm.STLDM`.
        temporal_attention: False for the "spatial enhancement" ablation.
        temporal_norm: ``"time"`` (released code's pre-norm across frames) or ``"channels"``.
        checkpoint_vae: recompute the VAE's activations in the backward pass (less memory, same values).
        checkpoint_translator: the same for the Translator (off by default: it costs time on CPU).
        vae_weight, kl_weight, constraint_weight, diffusion_weight, prior_weight: loss weights; a term with
            weight 0 is not computed (``constraint_weight: 0`` is the "without L_C" ablation).
        cond_drop_prob: probability of training without the condition (CFG).
        cond_drop_per_batch: drop the condition of the whole batch at once (released code) or per sample.
        sample_first_estimate: sample the Translator's input and output latents at evaluation, as the
            released code does; the default uses their means (a deterministic first estimate).
        batched_guidance: evaluate the conditional and unconditional U-Net calls of CFG as one batch (same
            values, faster on CPU; twice the activation memory).
        pretrained_ckpt: checkpoint of this task whose ``pretrained_modules`` weights are loaded at the start
            of a fresh ``fit`` (staged training: strategies A and B, with ``frozen_modules``).
        pretrained_modules: sub-modules to load, e.g. ``["net.vae"]`` (A) or ``["net.vae", "net.translator"]`` (B).
        **kwargs: :class:`~nowcast_pl.tasks.diffusion.DiffusionTask` / ``NowcastTask`` arguments; the
            defaults here are the paper's (T = 50 sigmoid, v, DDIM 20, w = 1, AdamW 1e-4, wd 0.01, 2000
            warm-up steps, cosine to 1e-6, clip 1.0).
    """

    supports_guidance = True
    distilled_module = "net.unet"

    def __init__(
        self,
        *,
        latent_channels: int = 32,
        vae_layers: int = 4,
        translator_width: int = 512,
        translator_depth: int = 8,
        mlp_ratio: float = 8.0,
        drop_path: float = 0.0,
        unet_base: int = 64,
        unet_mults: tuple[int, ...] = (1, 2, 4, 8),
        patch_size: int = 16,
        groups: int = 8,
        heads: int = 4,
        dim_head: int = 32,
        temporal_attention: bool = True,
        temporal_norm: Literal["time", "channels"] = "time",
        checkpoint_vae: bool = True,
        checkpoint_translator: bool = False,
        vae_weight: float = 1.0,
        kl_weight: float = 1e-6,
        constraint_weight: float = 1.0,
        diffusion_weight: float = 1.0,
        prior_weight: float = 1.0,
        cond_drop_prob: float = 0.15,
        cond_drop_per_batch: bool = True,
        sample_first_estimate: bool = False,
        batched_guidance: bool = True,
        pretrained_ckpt: str | None = None,
        pretrained_modules: list[str] | None = None,
        timesteps: int = 50,
        noise_schedule: Literal["sigmoid", "cosine", "linear"] = "sigmoid",
        objective: Literal["v", "eps", "x0"] = "v",
        guidance_scale: float = 1.0,
        sampling_steps: int = 20,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_steps: int = 2000,
        min_lr: float = 1e-6,
        gradient_clip_norm: float | None = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(timesteps=timesteps, noise_schedule=noise_schedule, objective=objective,
                         guidance_scale=guidance_scale, sampling_steps=sampling_steps, lr=lr,
                         weight_decay=weight_decay, warmup_steps=warmup_steps, min_lr=min_lr,
                         gradient_clip_norm=gradient_clip_norm, **kwargs)
        for name, value in (("vae_weight", vae_weight), ("kl_weight", kl_weight),
                            ("constraint_weight", constraint_weight), ("diffusion_weight", diffusion_weight),
                            ("prior_weight", prior_weight)):
            if value < 0:
                raise ValueError(f"model.init_args.{name} must be >= 0, got {value}")
        if not 0.0 <= cond_drop_prob <= 1.0:
            raise ValueError(f"model.init_args.cond_drop_prob must be in [0, 1], got {cond_drop_prob}")
        if pretrained_modules and not pretrained_ckpt:
            raise ValueError("model.init_args.pretrained_modules needs model.init_args.pretrained_ckpt")
        self.sample_first_estimate = sample_first_estimate
        self.net = STLDM(in_frames=self.in_frames, out_frames=self.out_frames, latent_channels=latent_channels,
                         vae_layers=vae_layers, translator_width=translator_width, translator_depth=translator_depth,
                         mlp_ratio=mlp_ratio, drop_path=drop_path, unet_base=unet_base, unet_mults=unet_mults,
                         patch_size=patch_size, groups=groups, heads=heads, dim_head=dim_head,
                         temporal_attention=temporal_attention, temporal_norm=temporal_norm,
                         checkpoint_vae=checkpoint_vae, checkpoint_translator=checkpoint_translator)

    # ----- training ------------------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.hparams.pretrained_ckpt and self.trainer.global_step == 0:
            load_pretrained(self, self.hparams.pretrained_ckpt, self.hparams.pretrained_modules or ["net.vae"])

    def draw(self, inputs: Tensor) -> TrainingDraws:
        """Fresh randomness for one step from torch's global RNG (timestep, CFG drop, Gaussian noises)."""
        b = inputs.shape[0]
        h, w = (s // self.net.vae.downsample_factor for s in inputs.shape[-2:])
        latent = (self.net.vae.latent_channels, h, w)
        t_in, t_out = self.in_frames, self.out_frames
        randn = lambda frames: torch.randn((b, frames, *latent), device=inputs.device)  # noqa: E731
        ones = torch.ones(b, device=inputs.device)
        hp = self.hparams
        keep = drop_condition(ones, hp.cond_drop_prob, per_batch=hp.cond_drop_per_batch)
        return TrainingDraws(t=torch.randint(0, self.timesteps, (b,), device=inputs.device), keep=keep,
                             noise_vae=randn(t_in + t_out), noise_in=randn(t_in), noise_out=randn(t_out),
                             noise_diffusion=randn(t_out))

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        self.net.check_frame_count(inputs, self.in_frames, "in_frames")
        self.net.check_frame_count(targets, self.out_frames, "out_frames")
        return self.loss_terms(inputs, targets, self.draw(inputs))

    def loss_terms(self, inputs: Tensor, targets: Tensor, draws: TrainingDraws) -> dict[str, Tensor]:
        """Weighted loss terms and their sum ``"loss"`` for frames in [0, 1] and fixed ``draws``.

        One encoder pass serves every term and one Translator pass serves both L_C and the condition (the
        released code repeats both; the expectations are the same).
        """
        hp, net = self.hparams, self.net
        frames = torch.cat((inputs, targets), dim=1)
        mean, log_var = net.encode(frames)
        target_mean = mean[:, self.in_frames:]
        terms: dict[str, Tensor] = {}
        if hp.vae_weight:
            recon = net.decode(reparameterize(mean, log_var, draws.noise_vae))
            terms["vae"] = F.mse_loss(recon, frames) + hp.kl_weight * kl_to_standard_normal(mean, log_var)
        first = None
        if hp.constraint_weight or hp.diffusion_weight:
            first = net.first_estimate(mean[:, :self.in_frames], log_var[:, :self.in_frames], sample=True,
                                       noise_in=draws.noise_in, noise_out=draws.noise_out)
        if hp.constraint_weight:
            terms["constraint"] = F.mse_loss(first.frames, targets)
        if hp.diffusion_weight:
            x0 = target_mean.detach()
            x_t = q_sample(x0, draws.t, draws.noise_diffusion, self.alphas_cumprod)
            output = net.denoise(x_t, draws.t, first.mean, draws.keep)
            terms["diffusion"] = diffusion_loss(output, x0, draws.noise_diffusion, draws.t, self.alphas_cumprod,
                                                objective=hp.objective, weighting=hp.loss_weighting)
        if hp.prior_weight:
            terms["prior"] = self.prior_kl(target_mean)
        weights = dict(vae=hp.vae_weight, constraint=hp.constraint_weight, diffusion=hp.diffusion_weight,
                       prior=hp.prior_weight)
        if not terms:
            raise ValueError("STLDMTask: every loss weight is 0; set at least one of model.init_args.*_weight")
        terms["loss"] = sum(weights[name] * value for name, value in terms.items())
        return terms

    def prior_kl(self, z0: Tensor) -> Tensor:
        """KL(N(√ᾱ_{T-1} z0, 1 - ᾱ_{T-1}) || N(0, I)), averaged over elements."""
        alpha_bar = self.alphas_cumprod[-1].to(z0.dtype)
        log_var = torch.log(1.0 - alpha_bar).expand_as(z0)
        return kl_to_standard_normal(alpha_bar.sqrt() * z0, log_var)

    def distillation_problems(self, batch: Batch) -> list[DenoisingProblem]:
        """The latent diffusion of the future frames: the target latents (encoder means), conditioned on the
        Translator's estimate as in sampling (means, or sampled with ``sample_first_estimate``); the null
        condition is all zeros with keep = 0, as in CFG training."""
        inputs, targets = batch["inputs"], batch["targets"]
        mean, log_var = self.net.encode(torch.cat((inputs, targets), dim=1))
        first = self.net.first_estimate(mean[:, : self.in_frames], log_var[:, : self.in_frames],
                                        sample=self.sample_first_estimate)
        rows = first.mean.shape[0]
        ones, zeros = torch.ones(rows, device=mean.device), torch.zeros(rows, device=mean.device)
        return [DenoisingProblem(x0=mean[:, self.in_frames:], network=_unet_call, cond=(first.mean, ones),
                                 null_cond=(torch.zeros_like(first.mean), zeros))]

    # ----- sampling ------------------------------------------------------------------------------------------

    @property
    def noise_stride(self) -> int:
        """The sampler's noise lives in the VAE's latent space, ``downsample_factor`` times coarser."""
        return self.net.vae.downsample_factor

    def forecast_rows(self, inputs: Tensor, generators: list[torch.Generator]) -> Tensor:
        """One member per row: ``(R, T_in, 1, H, W)`` -> ``(R, T_out, 1, H, W)`` in (0, 1)."""
        return self.sample_frames(inputs, generators)[0]

    def sample_frames(self, inputs: Tensor, generators: list[torch.Generator] | None, *,
                       x_T: Tensor | None = None, noise_in: Tensor | None = None,
                       noise_out: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Decoded sample and first estimate, each ``(R, T_out, 1, H, W)``.

        Noise comes from the row ``generators`` unless given: ``x_T`` for the sampler and, with
        ``sample_first_estimate``, ``noise_in``/``noise_out`` for the Translator (see :class:`TrainingDraws`).
        """
        self.net.check_frame_count(inputs, self.in_frames, "in_frames")
        net = self.net
        mean, log_var = net.encode(inputs)
        if self.sample_first_estimate:
            out_shape = (mean.shape[0], self.out_frames, *mean.shape[2:])
            if noise_in is None:
                noise_in = randn_like_rows(mean.shape, generators, mean.device, mean.dtype)
            if noise_out is None:
                noise_out = randn_like_rows(out_shape, generators, mean.device, mean.dtype)
        first = net.first_estimate(mean, log_var, sample=self.sample_first_estimate, noise_in=noise_in,
                                   noise_out=noise_out)
        rows = first.mean.shape[0]
        cond = (first.mean, torch.ones(rows, device=mean.device))
        null = (torch.zeros_like(first.mean), torch.zeros(rows, device=mean.device))
        network = guided(lambda x_t, t, c: net.denoise(x_t, t, *c), cond, null, self.sampling.guidance_scale,
                         batched=self.hparams.batched_guidance)
        denoiser = x0_denoiser(network, self.alphas_cumprod, self.hparams.objective)
        latents = self.sample_from_noise(denoiser, first.mean.shape, generators or [], x_T=x_T)
        return net.decode(latents), first.frames

    # ----- checkpoints ---------------------------------------------------------------------------------------

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hparams = checkpoint.get("hyper_parameters", {})
        for name in ("in_frames", "out_frames"):
            if name in hparams and hparams[name] != getattr(self, name):
                raise ValueError(f"checkpoint has {name}={hparams[name]} but the config sets "
                                 f"{name}={getattr(self, name)}; set data.{name} to {hparams[name]}")
        super().on_load_checkpoint(checkpoint)


def _unet_call(unet: Any, z_t: Tensor, t: Tensor, cond: tuple[Tensor, Tensor]) -> Tensor:
    """The STLDM U-Net on ``(condition, keep)``, in the argument order of a distillation problem."""
    return unet(z_t, t, *cond)


def load_pretrained(task: STLDMTask, path: str | Path, modules: list[str]) -> None:
    """Copy the weights of ``modules`` (e.g. ``"net.vae"``) from an STLDMTask checkpoint into ``task``."""
    state = read_checkpoint(path)["state_dict"]
    for name in modules:
        prefix = name + "."
        part = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if not part:
            raise ValueError(f"model.init_args.pretrained_ckpt {path} has no weights for {name!r} "
                             f"(pretrained_modules are e.g. net.vae, net.translator, net.unet)")
        task.get_submodule(name).load_state_dict(part)
