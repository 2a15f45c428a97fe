"""RainDiff (arXiv:2510.14962) and its ablation DiffCast (Yu et al., CVPR 2024) as a nowcasting task.

Training (RainDiff Sec. 3.2, eqs. 6-8): SimVP predicts the mean ``mu``; the encoder turns
``cat(observations, mu)`` into the context; one diffusion time ``t`` per sample is shared by all residual
segments; segment ``m`` is denoised conditioned on the ground-truth residual of segment ``m - 1`` (teacher
forcing; zeros for the first). ``loss = (1 - gamma) * MSE(mu, y) + gamma * mean_m L_diff(m)``, with the MSE
in [0, 1] data units, the diffusion loss on residuals of [-1, 1]-normalised frames, and ``mu`` not
detached (the whole model trains end to end).

Sampling: segments are generated in order by the core sampler (DDIM 250 steps by default), each conditioned
on the previous *sampled* residual; ``y = mu + r``. All randomness of batch row ``i`` comes from its
generator, so a member does not depend on the rest of the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from nowcast_pl.diffusion import diffusion_loss, q_sample, x0_denoiser
from nowcast_pl.layers.checkpointing import checkpointed
from nowcast_pl.models.raindiff.network import RainDiffNet, normalise, unnormalise
from nowcast_pl.tasks.base import Batch
from nowcast_pl.tasks.diffusion import DiffusionTask
from nowcast_pl.tasks.distillation import DenoisingProblem

SegmentFeatures = tuple[list, list]
CheckpointedPart = Literal["mean", "encoder", "denoiser"]
CHECKPOINTABLE_PARTS: frozenset[str] = frozenset(get_args(CheckpointedPart))


class RainDiffTask(DiffusionTask):
    """RainDiff / DiffCast: SimVP mean + context encoder + residual segment diffusion.

    Args:
        dim: base width of the encoder and U-Net.
        dim_mults: U-Net width multipliers; frames must be divisible by ``2 ** (len(dim_mults) - 1)``.
        tokenwise_attention: Token-wise Attention in the U-Net (RainDiff); False = DiffCast's U-Net with full
            softmax self-attention in the middle.
        post_attention: Token-wise Attention on the encoder outputs (RainDiff).
        variant: Token-wise Attention arithmetic, ``"paper"`` (eqs. 9-12) or ``"released"`` (the authors'
            code; needed to import their weights).
        local_context: the first segment uses the encoder state after frame ``T_in`` (released code).
        hid_S, hid_T, N_S, N_T: SimVP sizes.
        gamma: weight of the diffusion loss (eq. 8).
        clip_denoised: clamp the denoised residual to [-1, 1] at every sampler step (released code).
        activation_checkpointing: recompute activations in backward instead of keeping them (same loss,
            gradients and BatchNorm statistics; less memory, one more forward pass of the parts chosen):
            True for every part, False for none, or a list of parts among ``"mean"`` (each SimVP pass),
            ``"encoder"`` (each encoder level) and ``"denoiser"`` (each segment's U-Net call).
        sampling_steps: DDIM steps (250 as the paper); any core sampler and step count at test time.
        compile_denoiser: run-time; sample with ``torch.compile`` (inductor) of the U-Net. The first forecast
            of a process compiles it (minutes on CPU at the paper config, seconds once inductor's on-disk cache
            holds it, measured in ``docs/raindiff.md``; a new batch size, e.g. a smaller last ``member_chunk``,
            compiles once more); each denoiser call is then faster (fused normalisations and activations).
            Same values up to float rounding; needs a C++ compiler on CPU.
        lr, betas, warmup_steps, warmup_start_factor, gradient_clip_norm: the paper's optimiser (AdamW 1e-4,
            betas (0.9, 0.95), 1000 warm-up steps from 0 then cosine, gradient norm clipped to 1).
        **kwargs: :class:`DiffusionTask` arguments (T = 1000, sigmoid schedule, v objective with the
            official weighting by default, as both official codes) and :class:`NowcastTask` arguments
            (``ema_decay`` enables an EMA of the weights for evaluation).
    """

    runtime_settings = DiffusionTask.runtime_settings + ("compile_denoiser",)
    distilled_module = "net.denoiser"
    compile_backend = "inductor"
    """``torch.compile`` backend used by ``compile_denoiser``."""

    def __init__(self, *, dim: int = 64, dim_mults: Sequence[int] = (1, 2, 4, 8), tokenwise_attention: bool = True,
                 post_attention: bool = True, variant: Literal["paper", "released"] = "paper",
                 local_context: bool = True, hid_S: int = 64, hid_T: int = 256, N_S: int = 2, N_T: int = 6,
                 gamma: float = 0.5, clip_denoised: bool = True, sampling_steps: int = 250, lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.95), warmup_steps: int = 1000, warmup_start_factor: float = 0.0,
                 gradient_clip_norm: float | None = 1.0,
                 activation_checkpointing: bool | Sequence[CheckpointedPart] = False,
                 compile_denoiser: bool = False, **kwargs: Any) -> None:
        super().__init__(sampling_steps=sampling_steps, lr=lr, betas=betas, warmup_steps=warmup_steps,
                         warmup_start_factor=warmup_start_factor, gradient_clip_norm=gradient_clip_norm, **kwargs)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"model.init_args.gamma (the diffusion-loss weight) must be in [0, 1], got {gamma}")
        self.net = RainDiffNet(in_frames=self.in_frames, out_frames=self.out_frames, dim=dim, dim_mults=dim_mults,
                               tokenwise_attention=tokenwise_attention, post_attention=post_attention,
                               variant=variant, local_context=local_context, hid_S=hid_S, hid_T=hid_T, N_S=N_S,
                               N_T=N_T)
        self.gamma, self.clip = gamma, (-1.0, 1.0) if clip_denoised else None
        self.checkpointed_parts = checkpointed_parts(activation_checkpointing)
        self.compile_denoiser = compile_denoiser
        self._compiled_unet: Callable[..., Tensor] | None = None  # a function, not a submodule

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, in one line, a checkpoint of another architecture or Token-wise Attention variant."""
        ours = {k for k in self.state_dict() if k.startswith("net.")}
        theirs = {k for k in checkpoint.get("state_dict", {}) if k.startswith("net.")}
        if ours != theirs:
            hp = self.hparams
            raise ValueError(
                f"the checkpoint does not fit this RainDiffTask (tokenwise_attention={hp.tokenwise_attention}, "
                f"post_attention={hp.post_attention}, variant={hp.variant!r}, dim={hp.dim}, "
                f"dim_mults={list(hp.dim_mults)}): missing {_listed(ours - theirs)}; unexpected "
                f"{_listed(theirs - ours)}; set model.init_args to the architecture it was trained with")
        super().on_load_checkpoint(checkpoint)

    # ----- training ------------------------------------------------------------------------------------------

    def training_loss(self, batch: Batch) -> dict[str, Tensor]:
        inputs, targets = batch["inputs"], batch["targets"]
        b = inputs.shape[0]
        t = torch.randint(0, self.timesteps, (b,), device=inputs.device)
        shape = (b, self.in_frames, *inputs.shape[2:])
        noises = [torch.randn(shape, device=inputs.device) for _ in range(self.net.num_segments)]
        return self.loss_terms(inputs, targets, t, noises, batch.get("target_mask"))

    def loss_terms(self, inputs: Tensor, targets: Tensor, t: Tensor, noises: Sequence[Tensor],
                   mask: Tensor | None = None) -> dict[str, Tensor]:
        """Eq. 8 at given diffusion times and noises.

        Args:
            inputs: ``(B, T_in, C, H, W)`` in [0, 1]; targets: ``(B, T_out, C, H, W)`` in [0, 1].
            t: int64 ``(B,)``, shared by the segments of a sample.
            noises: one ``(B, T_in, C, H, W)`` noise per segment.
            mask: optional ``(B, T_out, C, H, W)`` bool, False for missing target pixels.

        Returns: ``loss``, ``mean_mse`` (data units) and ``diffusion`` (mean over segments).
        """
        parts = self.checkpointed_parts if self.training else frozenset()
        mean = self.net.predict_mean(inputs, checkpoint="mean" in parts)
        valid = torch.ones_like(targets, dtype=torch.bool) if mask is None else mask.bool()
        squared = F.mse_loss(mean[:, : self.out_frames], targets, reduction="none")
        mean_mse = (squared * valid).sum() / valid.sum().clamp_min(1)
        mean_n = normalise(mean)
        residual = normalise(targets) - mean_n[:, : self.out_frames]
        features = self.net.segment_features(self.net.encode(normalise(inputs), mean_n, checkpoint="encoder" in parts))
        diffusion = torch.stack([self._segment_loss(residual, valid, features, t, noise, m)
                                 for m, noise in enumerate(noises)]).mean()
        loss = (1.0 - self.gamma) * mean_mse + self.gamma * diffusion
        return {"loss": loss, "mean_mse": mean_mse.detach(), "diffusion": diffusion.detach()}

    def _segment_loss(self, residual: Tensor, valid: Tensor, features: SegmentFeatures, t: Tensor, noise: Tensor,
                      segment: int) -> Tensor:
        x0, x0_valid = self._segment(residual, segment), self._segment(valid, segment)
        previous_residual = torch.zeros_like(x0) if segment == 0 else self._segment(residual, segment - 1)
        x_t = q_sample(x0, t, noise, self.alphas_cumprod)
        if "denoiser" in self.checkpointed_parts:
            output = checkpointed(self.net.denoiser, self.net.denoise, x_t, t, previous_residual, features, segment)
        else:
            output = self.net.denoise(x_t, t, previous_residual, features, segment)
        return diffusion_loss(output, x0, noise, t, self.alphas_cumprod, objective=self.hparams.objective,
                              weighting=self.hparams.loss_weighting, mask=x0_valid)

    def _segment(self, frames: Tensor, segment: int) -> Tensor:
        """Frames of a segment, zero-padded to ``T_in`` frames when the last segment is short."""
        start, stop = self.net.segment_bounds(segment)
        part = frames[:, start:stop]
        missing = self.in_frames - part.shape[1]
        return F.pad(part, (0, 0, 0, 0, 0, 0, 0, missing)) if missing else part

    def distillation_problems(self, batch: Batch) -> list[DenoisingProblem]:
        """One problem per residual segment: its ground-truth residual, conditioned on the previous segment's
        (teacher forcing, as in training) and on the encoder features of this batch."""
        inputs, targets, mask = batch["inputs"], batch["targets"], batch.get("target_mask")
        mean_n = normalise(self.net.predict_mean(inputs))
        residual = normalise(targets) - mean_n[:, : self.out_frames]
        valid = torch.ones_like(targets, dtype=torch.bool) if mask is None else mask.bool()
        features = self.net.segment_features(self.net.encode(normalise(inputs), mean_n))
        problems = []
        for m in range(self.net.num_segments):
            previous = torch.zeros_like(self._segment(residual, m)) if m == 0 else self._segment(residual, m - 1)
            network = partial(_segment_network, self.net.denoise, features=features, segment=m)
            problems.append(DenoisingProblem(x0=self._segment(residual, m), network=network, cond=previous,
                                             mask=self._segment(valid, m), clip=self.clip))
        return problems

    # ----- sampling ------------------------------------------------------------------------------------------

    def _sampling_unet(self) -> Callable[..., Tensor] | None:
        """The U-Net that sampling calls: None (the module as is) or, with ``compile_denoiser``, its
        ``torch.compile``, built once per process (compiled functions are not pickled with the task)."""
        if not self.compile_denoiser:
            return None
        if self._compiled_unet is None:
            compiled = torch.compile(self.net.denoiser, backend=self.compile_backend)

            def compiled_unet(*args: Any, **kwargs: Any) -> Tensor:
                try:
                    return compiled(*args, **kwargs)
                except torch._dynamo.exc.BackendCompilerFailed as error:
                    raise _compile_failure(error) from error

            self._compiled_unet = compiled_unet
        return self._compiled_unet

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_compiled_unet": None}

    def forecast_rows(self, inputs: Tensor, generators: Sequence[torch.Generator],
                      x_T: Sequence[Tensor] | None = None) -> Tensor:
        """One member per row: ``(B, T_in, C, H, W)`` in [0, 1] -> ``(B, T_out, C, H, W)`` (not clamped).

        ``x_T`` optionally fixes each segment's starting noise (``(B, T_in, C, H, W)`` per segment).
        """
        mean_n = normalise(self.net.predict_mean(inputs))
        features = self.net.segment_features(self.net.encode(normalise(inputs), mean_n))
        shape = (inputs.shape[0], self.in_frames, *inputs.shape[2:])
        previous_residual = torch.zeros(shape, device=inputs.device, dtype=inputs.dtype)
        frames = []
        sampling_unet = self._sampling_unet()
        for m in range(self.net.num_segments):
            network = partial(self.net.denoise, previous_residual=previous_residual, features=features, segment=m,
                              unet=sampling_unet)
            denoiser = x0_denoiser(network, self.alphas_cumprod, self.hparams.objective)
            start = None if x_T is None else x_T[m]
            previous_residual = self.sample_from_noise(denoiser, shape, generators, clip=self.clip, x_T=start)
            frames.append(self._segment(mean_n, m) + previous_residual)
        return unnormalise(torch.cat(frames, dim=1)[:, : self.out_frames])


def _segment_network(denoise: Callable[..., Tensor], unet: Callable[..., Tensor], x_t: Tensor, t: Tensor,
                     previous_residual: Tensor, *, features: SegmentFeatures, segment: int) -> Tensor:
    """``RainDiffNet.denoise`` with ``unet`` as the U-Net, in the argument order of a distillation problem."""
    return denoise(x_t, t, previous_residual, features, segment, unet=unet)


def _compile_failure(error: Exception) -> RuntimeError:
    first_line = (str(error).strip().splitlines() or [""])[0]
    return RuntimeError(f"model.init_args.compile_denoiser: torch.compile could not build the U-Net "
                        f"({type(error).__name__}: {first_line}); install a C++ compiler for inductor or set "
                        f"compile_denoiser to false")


def checkpointed_parts(setting: bool | Sequence[str]) -> frozenset[str]:
    """The parts named by ``model.init_args.activation_checkpointing`` (True: all, False: none)."""
    if isinstance(setting, bool):
        return CHECKPOINTABLE_PARTS if setting else frozenset()
    unknown = sorted(set(setting) - CHECKPOINTABLE_PARTS)
    if unknown:
        raise ValueError(f"model.init_args.activation_checkpointing names unknown parts {unknown}; use true, false "
                         f"or a list of {sorted(CHECKPOINTABLE_PARTS)}")
    return frozenset(setting)


def _listed(keys: set[str], limit: int = 4) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})" if keys else "0"
