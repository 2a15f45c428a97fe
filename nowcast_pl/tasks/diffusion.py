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
from nowcast_pl.tasks.base import Batch, NowcastTask
from nowcast_pl.tasks.distillation import (
    RECORD,
    DenoisingProblem,
    DistillationSettings,
    ProgressiveDistillation,
    check_student_sampling,
)

DISTILLATION_SETTINGS = ("teacher_checkpoint", "distill_teacher_steps", "distill_student_steps",
                         "distill_stage_steps", "teacher_guidance_scale")


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
    ``supports_guidance = True``. Models that can be distilled (:mod:`nowcast_pl.tasks.distillation`) name the
    network their sampler calls in ``distilled_module`` and implement :meth:`distillation_problems`.

    Args:
        timesteps: T, the number of discrete diffusion steps of training.
        noise_schedule: ``"sigmoid"`` (both papers), ``"cosine"`` or ``"linear"``.
        objective: the network's prediction target, ``"v"`` (both papers), ``"eps"`` or ``"x0"``.
        loss_weighting: ``"official"`` (for v: SNR/(SNR+1) = ᾱ_t, as both official codes) or ``"plain"``.
        sampler, sampling_steps, eta, guidance_scale: run-time; the fields of :class:`SamplerSettings`, held
            in :attr:`sampling`.
        teacher_checkpoint: fit a student of this model by progressive distillation of this checkpoint (see
            :class:`~nowcast_pl.tasks.distillation.DistillationSettings`); None trains the model as usual.
        distill_teacher_steps, distill_student_steps, distill_stage_steps, teacher_guidance_scale: the
            distillation schedule (fit-time settings, not saved as hyper-parameters; the checkpoint records
            the schedule it was distilled with).
        **kwargs: :class:`NowcastTask` arguments.
    """

    stochastic = True
    accepts_row_noise = True
    supports_guidance = False
    distilled_module: str | None = None
    """Name of the sub-module that the sampler calls (the one distillation trains), e.g. ``"net.denoiser"``."""
    runtime_settings = (NowcastTask.runtime_settings + tuple(f.name for f in fields(SamplerSettings))
                        + DISTILLATION_SETTINGS)

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
        teacher_checkpoint: str | None = None,
        distill_teacher_steps: int = 256,
        distill_student_steps: int = 4,
        distill_stage_steps: int = 1000,
        teacher_guidance_scale: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        self.sampling = SamplerSettings(sampler, sampling_steps, eta, guidance_scale)
        self.sampling.check(timesteps=timesteps, supports_guidance=self.supports_guidance, task=name)
        self.register_buffer("alphas_cumprod", make_schedule(noise_schedule, timesteps), persistent=False)
        self.distillation: ProgressiveDistillation | None = None
        self.distilled_record: dict[str, Any] | None = None  # the record of a distilled checkpoint loaded
        if teacher_checkpoint is not None:
            if self.distilled_module is None:
                raise ValueError(f"{name} cannot be distilled (it names no distilled_module); "
                                 "remove model.init_args.teacher_checkpoint")
            settings = DistillationSettings(teacher_checkpoint, distill_teacher_steps, distill_student_steps,
                                            distill_stage_steps, teacher_guidance_scale)
            settings.check(timesteps=timesteps, supports_guidance=self.supports_guidance, task=name)
            self.distillation = ProgressiveDistillation(settings)

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

    # ----- distillation (nowcast_pl.tasks.distillation) ------------------------------------------------------

    def distillation_problems(self, batch: Batch) -> list[DenoisingProblem]:
        """The denoisers the sampler runs for ``batch``, with the data and conditions to distil them on."""
        raise NotImplementedError(f"{type(self).__name__} must implement distillation_problems()")

    def configure_model(self) -> None:
        super().configure_model()
        if self.distillation is not None:
            self.requires_grad_(False)
            self.get_submodule(self.distilled_module).requires_grad_(True)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.distillation is None:
            return
        settings, max_steps = self.distillation.settings, self.trainer.max_steps
        if max_steps != settings.total_steps:
            raise ValueError(f"trainer.max_steps is {max_steps} but the distillation takes {settings.stages} stages "
                             f"of model.init_args.distill_stage_steps={settings.stage_steps}: set trainer.max_steps "
                             f"to {settings.total_steps}")
        if self.trainer.global_step == 0 and self.distillation.teacher is None:
            self.distillation.initialise(self)

    def configure_optimizers(self) -> dict[str, Any]:
        if self.distillation is not None and self.hparams.schedule_steps is None:
            # the schedule's length is known: asking the trainer for it would set up the training data before
            # a resumed fit restores its position in the epoch
            self.hparams.schedule_steps = self.distillation.settings.total_steps
        return super().configure_optimizers()

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self.distillation is not None:  # only the distilled module trains; the rest stays the teacher's
            self.eval()
            self.get_submodule(self.distilled_module).train()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if self.distillation is None:
            return super().training_step(batch, batch_idx)
        losses = self.distillation.loss(self, batch, self.trainer.global_step)
        self.log_dict({f"train/distill_{k}": v.detach() for k, v in losses.items()}, prog_bar=True,
                      batch_size=batch["inputs"].shape[0])
        return losses["loss"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.distillation is not None:
            self.distillation.after_optimizer_step(self, self.trainer.global_step + 1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.distillation is not None and self.distillation.teacher is not None:
            self.distillation.save(checkpoint)
        elif self.distilled_record is not None:
            checkpoint[RECORD] = self.distilled_record

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A distilled checkpoint: resume its distillation, or check the sampler settings fit the student."""
        super().on_load_checkpoint(checkpoint)
        record = checkpoint.get(RECORD)
        if record is None:
            return
        if self.distillation is not None:
            self.distillation.restore(self, record)
        else:
            check_student_sampling(record, self.sampling, type(self).__name__)
            self.distilled_record = {k: v for k, v in record.items() if k != "teacher_state"}
