"""Progressive distillation of any :class:`~nowcast_pl.tasks.diffusion.DiffusionTask` (Salimans & Ho 2022), with
classifier-free guidance folded into the student (Meng et al. 2023).

The student is the task itself, initialised from a teacher checkpoint of the same class (its EMA weights when it
has them). Only the network that the sampler calls (the model's ``distilled_module``, e.g. RainDiff's U-Net) is
trained; everything that conditions it (mean predictor, encoders) stays the teacher's and is frozen. Stage k
(k = 0, 1, ...) lasts ``distill_stage_steps`` optimiser steps and teaches the student to take one DDIM step
where its teacher takes two, on grids of ``distill_teacher_steps / 2**(k+1)`` student steps; at the end of a
stage the student becomes the next stage's teacher. With ``teacher_guidance_scale`` w > 0 the first stage's
teacher is the guided model, so the student learns the guided sampler with one call per step.

A model opts in with two hooks: the class attribute ``distilled_module`` and the method
``distillation_problems(batch)``, which returns one :class:`DenoisingProblem` per denoiser the sampler runs
(RainDiff: one per residual segment, conditioned on the previous segment as in the teacher's training).

Checkpoints: the current teacher and the schedule are kept in ``checkpoint["nowcast_distillation"]``, so a fit
resumes mid-stage exactly; the state dict holds the student only, so a distilled checkpoint is a checkpoint of
its model class, evaluated with ``nowcast test|predict`` and ``nowcast report`` like any other. Its sampler is
DDIM with a step count it was distilled for (checked when it is loaded).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nowcast_pl.diffusion import (
    diffusion_loss,
    eps_from_x0,
    guided,
    progressive_target,
    progressive_times,
    q_sample,
    x0_denoiser,
)
from nowcast_pl.diffusion.guidance import Cond
from nowcast_pl.diffusion.samplers import Clip
from nowcast_pl.tasks.ema import shadow_name

if TYPE_CHECKING:
    from nowcast_pl.tasks.diffusion import DiffusionTask, SamplerSettings

RECORD = "nowcast_distillation"
"""Checkpoint key of the distillation record (schedule, steps reached, folded guidance, current teacher)."""


@dataclass
class DenoisingProblem:
    """One denoiser of a model's sampler, for a batch: what it denoises and how it is called.

    Attributes:
        x0: clean data of the sampler ``(B, ...)`` (e.g. a normalised residual segment, or latents).
        network: ``(module, x_t, t, cond) -> output`` under the task's objective, where ``module`` stands for
            the ``distilled_module`` (the teacher's copy or the student's).
        cond: the condition of ``network`` (a tensor or a pytree of them, see :mod:`nowcast_pl.diffusion.guidance`).
        null_cond: the unconditional condition, needed for a guided teacher.
        mask: optional ``(B, ...)`` mask of valid elements of ``x0``.
        clip: the range the sampler clamps x̂0 to (None: no clamp).
    """

    x0: Tensor
    network: Callable[[Any, Tensor, Tensor, Cond], Tensor]
    cond: Cond
    null_cond: Cond = None
    mask: Tensor | None = None
    clip: Clip = None


@dataclass
class DistillationSettings:
    """The schedule of a progressive distillation (init arguments of a :class:`DiffusionTask`).

    Args:
        teacher_checkpoint: checkpoint of the teacher (same model class and architecture); None: no distillation.
        teacher_steps: DDIM steps of the first teacher (e.g. 256 for RainDiff's 250, 32 for STLDM's 20).
        student_steps: DDIM steps of the final student; ``teacher_steps / student_steps`` is a power of two >= 2.
        stage_steps: optimiser steps per stage (halving of the step count).
        teacher_guidance_scale: guidance weight w of the first teacher, folded into the student.
    """

    teacher_checkpoint: str | None = None
    teacher_steps: int = 256
    student_steps: int = 4
    stage_steps: int = 1000
    teacher_guidance_scale: float = 0.0

    @property
    def stages(self) -> int:
        """Number of stages, log2(teacher_steps / student_steps)."""
        return (self.teacher_steps // self.student_steps).bit_length() - 1

    @property
    def total_steps(self) -> int:
        """Optimiser steps of the whole distillation."""
        return self.stages * self.stage_steps

    def check(self, *, timesteps: int, supports_guidance: bool, task: str) -> None:
        """Raise ValueError naming the init argument when the schedule does not fit the model."""
        ratio = self.teacher_steps // max(self.student_steps, 1)
        if (self.student_steps < 1 or self.teacher_steps % self.student_steps or ratio < 2
                or ratio & (ratio - 1)):
            raise ValueError(f"model.init_args.distill_teacher_steps={self.teacher_steps} must be a power-of-two "
                             f"multiple (>= 2) of distill_student_steps={self.student_steps}")
        if self.teacher_steps > timesteps:
            raise ValueError(f"model.init_args.distill_teacher_steps={self.teacher_steps} exceeds the "
                             f"timesteps={timesteps} of {task}")
        if self.stage_steps < 1:
            raise ValueError(f"model.init_args.distill_stage_steps must be >= 1, got {self.stage_steps}")
        if self.teacher_guidance_scale and not supports_guidance:
            raise ValueError(f"{task} is not trained with condition dropout: set "
                             "model.init_args.teacher_guidance_scale to 0")

    def stage_at(self, global_step: int) -> int:
        """The stage that optimiser step ``global_step`` (0-based) belongs to."""
        return min(global_step // self.stage_steps, self.stages - 1)

    def student_steps_at(self, stage: int) -> int:
        """DDIM steps of the student of ``stage``."""
        return self.teacher_steps >> (stage + 1)

    def reached_steps(self, global_step: int) -> int:
        """The fewest DDIM steps a student has been trained for after ``global_step`` optimiser steps."""
        return self.teacher_steps >> min(global_step // self.stage_steps, self.stages)

    def schedule(self) -> dict[str, Any]:
        """The settings a resumed fit must share with the checkpoint (all but the teacher's path)."""
        return {"teacher_steps": self.teacher_steps, "student_steps": self.student_steps,
                "stage_steps": self.stage_steps, "teacher_guidance_scale": self.teacher_guidance_scale}


def allowed_steps(record: dict[str, Any]) -> list[int]:
    """DDIM step counts a distilled checkpoint samples with: those of the stages it completed, and the teacher's."""
    steps, allowed = int(record["reached_steps"]), []
    while steps <= int(record["teacher_steps"]):
        allowed.append(steps)
        steps *= 2
    return allowed


def check_student_sampling(record: dict[str, Any], sampling: SamplerSettings, task: str) -> None:
    """Refuse, in one line, sampler settings a distilled checkpoint was not trained for."""
    allowed = allowed_steps(record)
    if sampling.sampler != "ddim" or sampling.sampling_steps not in allowed:
        raise ValueError(f"this {task} checkpoint is a student distilled for DDIM with {allowed} steps, not "
                         f"{sampling.sampler} with {sampling.sampling_steps}; sample it with sampler ddim and one "
                         f"of those sampling_steps {_where_set('sampler', 'sampling_steps')}")
    folded = float(record.get("teacher_guidance_scale", 0.0))
    if folded and sampling.guidance_scale:
        raise ValueError(f"this {task} student has guidance w={folded:g} folded in (one call per step); set "
                         f"guidance_scale to 0 {_where_set('guidance_scale')}")


def _where_set(*settings: str) -> str:
    """Where each command takes these sampler settings, e.g. ``(--sampling-steps in nowcast forecast, ...)``."""
    forecast = ", ".join("--" + name.replace("_", "-") for name in settings)
    others = ", ".join("--model.init_args." + name for name in settings)
    return f"({forecast} in nowcast forecast; {others} in nowcast test and predict)"


class ProgressiveDistillation:
    """The distillation state of a task: its settings and the current teacher (a frozen copy of the task's
    ``distilled_module``, kept out of the task's state dict, parameters and EMA)."""

    def __init__(self, settings: DistillationSettings) -> None:
        self.settings = settings
        self.teacher: nn.Module | None = None

    # ----- start and checkpoints -----------------------------------------------------------------------------

    def initialise(self, task: DiffusionTask) -> None:
        """Load the teacher checkpoint into the task (EMA weights when present) and copy its distilled module
        as the first teacher."""
        from nowcast_pl.checkpoints import check_weights_fit, read_checkpoint  # reads files: loaded when used

        path = self.settings.teacher_checkpoint
        checkpoint = read_checkpoint(path)
        check_teacher_class(checkpoint, task, path)
        check_weights_fit(task, checkpoint, path)
        state = checkpoint["state_dict"]
        with torch.no_grad():
            for name, tensor in task.ema_tensors():
                tensor.copy_(state.get(f"ema.{shadow_name(name)}", state[name]))
        if task.ema is not None:
            task.ema.update(task.ema_tensors(), decay=0.0)
        self.teacher = frozen_copy(task.get_submodule(task.distilled_module))

    def save(self, checkpoint: dict[str, Any]) -> None:
        """Write the record: schedule, steps reached, and the current teacher's weights."""
        record = self.settings.schedule() | {"reached_steps": self.settings.reached_steps(checkpoint["global_step"])}
        record["teacher_state"] = {k: v.detach().cpu().clone() for k, v in self.teacher.state_dict().items()}
        checkpoint[RECORD] = record

    def restore(self, task: DiffusionTask, record: dict[str, Any], path: str = "the checkpoint") -> None:
        """Resume: check the schedule is the checkpoint's and restore its teacher."""
        saved = {k: record[k] for k in self.settings.schedule()}
        if saved != self.settings.schedule():
            raise ValueError(f"{path} was distilled with {saved}, but the config sets "
                                  f"{self.settings.schedule()}; resume with the schedule it was started with")
        self.teacher = frozen_copy(task.get_submodule(task.distilled_module))
        self.teacher.load_state_dict(record["teacher_state"])

    # ----- training ------------------------------------------------------------------------------------------

    def loss(self, task: DiffusionTask, batch: dict[str, Tensor], global_step: int) -> dict[str, Tensor]:
        """Distillation loss of optimiser step ``global_step``: the MSE between the student's output and the
        objective's target for the teacher's two-step x̃ (unweighted: on v it weighs x̂0 errors by SNR + 1,
        Salimans & Ho 2022, Sec. 4), averaged over the model's denoising problems."""
        settings = self.settings
        stage = settings.stage_at(global_step)
        steps = settings.student_steps_at(stage)
        scale = settings.teacher_guidance_scale if stage == 0 else 0.0
        with torch.no_grad():
            problems = task.distillation_problems(batch)
        student = task.get_submodule(task.distilled_module)
        teacher = self.teacher.to(task.device)
        ac, objective = task.alphas_cumprod, task.hparams.objective
        losses = []
        for problem in problems:
            index = torch.randint(0, steps, (problem.x0.shape[0],), device=problem.x0.device)
            t, t_mid, t_next = progressive_times(task.timesteps, steps, index)
            noise = torch.randn_like(problem.x0)
            x_t = q_sample(problem.x0, t, noise, ac)
            teacher_network = guided(partial(problem.network, teacher), problem.cond, problem.null_cond, scale)
            target = progressive_target(x0_denoiser(teacher_network, ac, objective), x_t, t, t_mid, t_next, ac,
                                        clip=problem.clip)
            output = problem.network(student, x_t, t, problem.cond)
            losses.append(diffusion_loss(output, target, eps_from_x0(x_t, t, target, ac), t, ac,
                                         objective=objective, weighting="plain", mask=problem.mask))
        return {"loss": torch.stack(losses).mean(), "student_steps": torch.tensor(float(steps))}

    def after_optimizer_step(self, task: DiffusionTask, step: int) -> None:
        """At the end of a stage (``step`` optimiser steps done) the student becomes the next teacher."""
        stage_steps = self.settings.stage_steps
        if step % stage_steps == 0 and step // stage_steps < self.settings.stages:
            self.teacher.load_state_dict(task.get_submodule(task.distilled_module).state_dict())


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in eval mode without gradients."""
    teacher = copy.deepcopy(module).eval()
    teacher.requires_grad_(False)
    return teacher


def check_teacher_class(checkpoint: dict[str, Any], task: DiffusionTask, path: str) -> None:
    """Refuse a teacher checkpoint that holds no diffusion model, or another model class than the student's."""
    from nowcast_pl.checkpoints import CheckpointError, check_model_class
    from nowcast_pl.models.moved import current_class_path
    from nowcast_pl.tasks.diffusion import DiffusionTask

    saved = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    if saved is None:
        return
    module, _, name = current_class_path(saved).rpartition(".")
    try:
        saved_class = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        saved_class = None
    if not (isinstance(saved_class, type) and issubclass(saved_class, DiffusionTask)):
        raise CheckpointError(f"model.init_args.teacher_checkpoint {path} holds a {saved.rsplit('.', 1)[-1]}, "
                              "not a diffusion model; distil a checkpoint of a diffusion model")
    student = f"{type(task).__module__}.{type(task).__name__}"
    check_model_class(checkpoint, student, f"model.init_args.teacher_checkpoint {path}")
