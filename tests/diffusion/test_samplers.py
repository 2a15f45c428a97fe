"""Samplers: the official DDIM arithmetic, convergence to the exact probability-flow ODE solution for Gaussian
data, DDPM statistics, dispatch and errors."""

import math

import pytest
import torch

from nowcast_pl.diffusion import (
    SAMPLERS,
    ddim_sample,
    ddim_timesteps,
    ddpm_sample,
    dpmpp_2m_sample,
    dpmpp_timesteps,
    linear_schedule,
    sample,
    sigmoid_schedule,
    x0_denoiser,
)


def gaussian_denoiser(ac, mu, s):
    """Exact E[x0 | x_t] for x0 ~ N(mu, s² I): mu + α s²/(α² s² + σ²)(x_t - α mu)."""
    def denoise(x_t, t):
        alpha_bar = ac.to(x_t.dtype)[t].view(-1, *[1] * (x_t.dim() - 1))
        alpha = alpha_bar.sqrt()
        return mu + alpha * s**2 / (alpha_bar * s**2 + 1 - alpha_bar) * (x_t - alpha * mu)
    return denoise


def ode_solution(ac, mu, s, x_T):
    """Probability-flow ODE from t = T-1 to clean data: x0 = mu + s (x_T - α_T mu)/sqrt(α_T² s² + σ_T²)."""
    alpha_bar = ac[-1].item()
    return mu + s * (x_T - math.sqrt(alpha_bar) * mu) / math.sqrt(alpha_bar * s**2 + 1 - alpha_bar)


def test_ddim_timesteps_official_grids():
    assert ddim_timesteps(50, 20) == [49, 46, 44, 41, 39, 36, 34, 31, 29, 26, 24, 21, 19, 16, 14, 11, 9, 6, 4, 1, -1]
    grid = ddim_timesteps(1000, 250)
    assert grid[:3] == [999, 995, 991] and grid[-3:] == [7, 3, -1] and len(grid) == 251
    assert ddim_timesteps(10, 10) == list(range(9, -2, -1))
    with pytest.raises(ValueError, match="sampling steps must be an int in 1..T=50"):
        ddim_timesteps(50, 51)


def test_dpmpp_timesteps_uniform_in_log_snr_and_distinct():
    ac = sigmoid_schedule(1000)
    grid = dpmpp_timesteps(ac, 10)
    assert grid == [999, 998, 992, 949, 785, 499, 213, 49, 6, 0, -1]
    log_snr = 0.5 * torch.log(ac / (1 - ac))
    gaps = log_snr[grid[2:-1]] - log_snr[grid[1:-2]]
    assert torch.allclose(gaps, gaps.mean().expand_as(gaps), rtol=0.05)  # uniform up to integer rounding
    assert dpmpp_timesteps(sigmoid_schedule(50), 1) == [49, -1]
    assert dpmpp_timesteps(sigmoid_schedule(50), 2) == [49, 0, -1]
    assert dpmpp_timesteps(sigmoid_schedule(50), 50) == list(range(49, -2, -1))


def _official_ddim_scalar(x, ac, times, network, clip, eta=0.0, noises=()):
    """The lucidrains ddim_sample arithmetic on one float: v output -> x0 -> clamp -> ε re-derived."""
    noises = iter(noises)
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        a = ac[t]
        x0 = math.sqrt(a) * x - math.sqrt(1 - a) * network(x, t)
        if clip:
            x0 = min(max(x0, -1.0), 1.0)
        eps = (math.sqrt(1 / a) * x - x0) / math.sqrt(1 / a - 1)
        if t_next < 0:
            return x0
        a_next = ac[t_next]
        sigma = eta * math.sqrt((1 - a / a_next) * (1 - a_next) / (1 - a))
        c = math.sqrt(1 - a_next - sigma**2)
        x = x0 * math.sqrt(a_next) + c * eps + (sigma * next(noises) if sigma > 0 else 0.0)
    raise AssertionError("grid must end at -1")


def _linear_v_network(x_t, t):
    """Dummy linear v-prediction network: v = 0.9 x_t + 0.05 t."""
    return 0.9 * x_t + 0.05 * t.to(x_t.dtype).view(-1, *[1] * (x_t.dim() - 1))


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_three_steps_golden_numbers(clip):
    ac = sigmoid_schedule(10)
    x_T = torch.tensor([[1.3, -0.4], [2.5, 0.0]], dtype=torch.float64)
    times = ddim_timesteps(10, 3)
    assert times == [9, 5, 2, -1]
    denoiser = x0_denoiser(_linear_v_network, ac, "v")
    out = ddim_sample(denoiser, x_T.shape, ac, steps=3, x_T=x_T, clip=(-1.0, 1.0) if clip else None)
    network = lambda x, t: 0.9 * x + 0.05 * t  # noqa: E731
    expected = [[_official_ddim_scalar(v, ac.tolist(), times, network, clip) for v in row] for row in x_T.tolist()]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    golden = [[0.0082010, -0.1879687], [0.2311824, -0.1608021]] if clip else [[-0.0725108, -0.1879687],
                                                                              [0.0089889, -0.1608021]]
    assert torch.allclose(out, torch.tensor(golden, dtype=torch.float64), atol=1e-6)


def test_ddim_with_eta_uses_generator_noise_after_x_T():
    ac = sigmoid_schedule(10)
    denoiser = x0_denoiser(_linear_v_network, ac, "v")
    out = ddim_sample(denoiser, (1, 1), ac, steps=3, eta=0.7, generator=torch.Generator().manual_seed(3),
                      dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    draws = [torch.randn((1, 1), generator=g, dtype=torch.float64).item() for _ in range(3)]
    expected = _official_ddim_scalar(draws[0], ac.tolist(), [9, 5, 2, -1], lambda x, t: 0.9 * x + 0.05 * t,
                                     clip=False, eta=0.7, noises=draws[1:])
    assert out.item() == pytest.approx(expected, abs=1e-12)


def test_ddim_clip_bounds_output_and_global_rng_matches_torch_randn():
    ac = sigmoid_schedule(50)
    denoiser = lambda x, t: 3 * x  # noqa: E731
    torch.manual_seed(11)
    out = ddim_sample(denoiser, (2, 8), ac, steps=5, clip=(-1.0, 1.0))
    assert out.abs().max().item() <= 1.0 and out.dtype == torch.float32
    torch.manual_seed(11)
    x_T = torch.randn(2, 8)
    assert torch.equal(out, ddim_sample(denoiser, None, ac, steps=5, clip=(-1.0, 1.0), x_T=x_T))


def _rms(a, b):
    return (a - b).pow(2).mean().sqrt().item()


@pytest.mark.parametrize("sampler", [ddim_sample, dpmpp_2m_sample])
def test_deterministic_samplers_converge_to_the_ode_solution(sampler):
    ac, mu, s = sigmoid_schedule(1000), 0.3, 0.5
    x_T = torch.randn(512, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = ode_solution(ac, mu, s, x_T)
    errors = [_rms(sampler(gaussian_denoiser(ac, mu, s), None, ac, steps=n, x_T=x_T), exact) for n in (10, 50, 250)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3
    assert errors[0] < 0.15


def test_ddpm_reproduces_gaussian_mean_and_variance():
    ac, mu, s, n = sigmoid_schedule(1000), 0.3, 0.5, 20000
    out = ddpm_sample(gaussian_denoiser(ac, mu, s), (n, 1), ac, generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)
    mean, var = 0.0, 1.0  # the exact law of this linear-Gaussian chain (β̃ slightly under-disperses)
    for t in reversed(range(1000)):
        a, a_prev = ac[t].item(), (ac[t - 1].item() if t > 0 else 1.0)
        beta, alpha = 1 - a / a_prev, math.sqrt(a)
        gain = alpha * s**2 / (a * s**2 + 1 - a)
        c1, c2 = math.sqrt(a_prev) * beta / (1 - a), math.sqrt(1 - beta) * (1 - a_prev) / (1 - a)
        mean = (c1 * gain + c2) * mean + c1 * mu * (1 - gain * alpha)
        var = (c1 * gain + c2) ** 2 * var + (beta * (1 - a_prev) / (1 - a) if t > 0 else 0.0)
    assert mean == pytest.approx(mu, abs=1e-4) and var == pytest.approx(s**2, rel=0.02)
    assert out.mean().item() == pytest.approx(mean, abs=4 * math.sqrt(var / n))
    assert out.var().item() == pytest.approx(var, rel=4 * math.sqrt(2 / n))


def test_ddpm_last_step_returns_x0_estimate():
    ac = linear_schedule(20)
    calls = []

    def denoiser(x, t):
        calls.append(int(t[0]))
        return torch.full_like(x, 0.25)
    out = ddpm_sample(denoiser, (3, 2), ac, generator=torch.Generator().manual_seed(0))
    assert calls == list(range(19, -1, -1))
    assert torch.equal(out, torch.full((3, 2), 0.25))


def test_sample_dispatch_and_call_counts():
    ac = sigmoid_schedule(50)
    calls = []

    def denoiser(x, t):
        calls.append(t.clone())
        return 0.5 * x
    x_T = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    for name, steps, expected_calls in (("ddim", 20, 20), ("dpmpp_2m", 7, 7), ("ddpm", 3, 50)):
        calls.clear()
        out = sample(name, denoiser, x_T.shape, ac, steps=steps, x_T=x_T, generator=torch.Generator())
        assert len(calls) == expected_calls and out.shape == (2, 3)
        assert all(c.dtype == torch.int64 and c.shape == (2,) for c in calls)
    assert set(SAMPLERS) == {"ddim", "ddpm", "dpmpp_2m"}
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        sample("euler", denoiser, (1, 1), ac, steps=2)
    with pytest.raises(ValueError, match="sampling steps"):
        sample("ddim", denoiser, (1, 1), ac)
    with pytest.raises(ValueError, match="x_T has shape"):
        ddim_sample(denoiser, (3, 3), ac, steps=2, x_T=x_T)
