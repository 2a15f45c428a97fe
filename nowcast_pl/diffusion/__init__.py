"""Diffusion core in plain PyTorch: schedules, objectives and loss, samplers, classifier-free guidance,
progressive-distillation targets and seeded noise. See docs/diffusion.md."""

from nowcast_pl.diffusion.distillation import ddim_step, progressive_target, progressive_times, student_x0_target
from nowcast_pl.diffusion.guidance import drop_condition, guided
from nowcast_pl.diffusion.noise import member_generators, member_seed, randn_like_rows
from nowcast_pl.diffusion.objectives import (
    Objective,
    diffusion_loss,
    eps_from_v,
    eps_from_x0,
    loss_weight,
    model_output_to_x0,
    q_sample,
    target_for,
    v_target,
    x0_from_eps,
    x0_from_v,
)
from nowcast_pl.diffusion.samplers import (
    SAMPLERS,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    dpmpp_2m_sample,
    dpmpp_timesteps,
    sample,
    x0_denoiser,
)
from nowcast_pl.diffusion.schedules import cosine_schedule, linear_schedule, make_schedule, sigmoid_schedule

__all__ = [
    "SAMPLERS",
    "Objective",
    "cosine_schedule",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_sample",
    "diffusion_loss",
    "dpmpp_2m_sample",
    "dpmpp_timesteps",
    "drop_condition",
    "eps_from_v",
    "eps_from_x0",
    "guided",
    "linear_schedule",
    "loss_weight",
    "make_schedule",
    "member_generators",
    "member_seed",
    "model_output_to_x0",
    "progressive_target",
    "progressive_times",
    "q_sample",
    "randn_like_rows",
    "sample",
    "sigmoid_schedule",
    "student_x0_target",
    "target_for",
    "v_target",
    "x0_denoiser",
    "x0_from_eps",
    "x0_from_v",
]
