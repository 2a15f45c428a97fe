"""Progressive-distillation targets (Salimans & Ho 2022, Alg. 2) with an exact Gaussian denoiser."""

import pytest
import torch

from nowcast_pl.diffusion import (
    ddim_sample,
    ddim_timesteps,
    guided,
    progressive_target,
    progressive_times,
    sigmoid_schedule,
)

AC = sigmoid_schedule(50)
MU, STD = 0.3, 0.5


def gaussian_denoiser(x_t, t, mu=MU, std=STD):
    """E[x0 | x_t] for x0 ~ N(mu, std²): mu + α std² / (α² std² + σ²) (x_t - α mu)."""
    alpha_bar = AC[t].view((-1,) + (1,) * (x_t.dim() - 1)).to(x_t.dtype)
    alpha = alpha_bar.sqrt()
    return mu + alpha * std**2 / (alpha_bar * std**2 + 1 - alpha_bar) * (x_t - alpha * mu)


def test_times_are_the_student_grid_with_the_teachers_midpoint():
    t, t_mid, t_next = progressive_times(50, 4, torch.tensor([0, 1, 3]))
    assert t.tolist() == [49, 36, 11] and t_mid.tolist() == [42, 30, 5] and t_next.tolist() == [36, 24, -1]
    with pytest.raises(ValueError, match="a student of 32 steps needs a teacher of 64 steps"):
        progressive_times(50, 32, torch.tensor([0]))


def test_golden_numbers_of_the_student_target():
    # Computed with scalar float arithmetic of the two teacher DDIM steps and Alg. 2's x̃.
    x_t = torch.tensor([[0.7], [-0.2], [0.1]], dtype=torch.float64)
    t, t_mid, t_next = progressive_times(50, 4, torch.tensor([0, 1, 3]))
    target = progressive_target(gaussian_denoiser, x_t, t, t_mid, t_next, AC)
    torch.testing.assert_close(target.flatten(), torch.tensor([0.318470552589167, 0.25352338893646037,
                                                               0.16809318135192117], dtype=torch.float64))


@pytest.mark.parametrize("student_steps", [1, 2, 4])
def test_a_student_that_predicts_the_target_samples_like_the_teacher_with_twice_the_steps(student_steps):
    teacher_grid, student_grid = ddim_timesteps(50, 2 * student_steps), ddim_timesteps(50, student_steps)
    assert teacher_grid[::2] == student_grid  # the grids nest for these step counts

    def student(x_t, t):
        index = torch.tensor([student_grid.index(int(time)) for time in t])
        return progressive_target(gaussian_denoiser, x_t, *progressive_times(50, student_steps, index), AC)

    x_T = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(ddim_sample(student, None, AC, steps=student_steps, x_T=x_T),
                               ddim_sample(gaussian_denoiser, None, AC, steps=2 * student_steps, x_T=x_T))


def test_clip_applies_to_the_teachers_estimates():
    x_t = torch.full((2, 1), 3.0, dtype=torch.float64)
    t, t_mid, t_next = progressive_times(50, 1, torch.zeros(2, dtype=torch.long))
    far = lambda x, t: gaussian_denoiser(x, t, mu=5.0, std=0.1)  # noqa: E731
    assert progressive_target(far, x_t, t, t_mid, t_next, AC).min() > 4.0
    assert progressive_target(far, x_t, t, t_mid, t_next, AC, clip=(-1.0, 1.0)).max().item() == 1.0


def test_a_guided_teacher_is_folded_into_the_target():
    # With outputs linear in x_t, CFG with w mixes the conditional (mean 0.3) and unconditional (mean -0.5)
    # denoisers as (1 + w) c - w u; its target is that of the teacher whose data mean is (1 + w) 0.3 + w 0.5.
    network = lambda x, t, mean: gaussian_denoiser(x, t, mu=mean)  # noqa: E731
    teacher = guided(network, 0.3, -0.5, 1.5)
    x_t = torch.linspace(-1, 1, 5, dtype=torch.float64)[:, None]
    times = progressive_times(50, 2, torch.tensor([0, 1, 0, 1, 1]))
    expected = progressive_target(lambda x, t: gaussian_denoiser(x, t, mu=2.5 * 0.3 + 1.5 * 0.5), x_t, *times, AC)
    torch.testing.assert_close(progressive_target(teacher, x_t, *times, AC), expected)
