"""Noise schedules: formulas and the numbers of the official RainDiff (T=1000) and STLDM (T=50) codes."""

import math

import pytest
import torch

from nowcast_pl.diffusion import cosine_schedule, linear_schedule, make_schedule, sigmoid_schedule


def _betas(alphas_cumprod):
    return 1 - alphas_cumprod / torch.cat((torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]))


def test_sigmoid_schedule_matches_raindiff_numbers():
    ac = sigmoid_schedule(1000)
    assert ac.dtype == torch.float64 and ac.shape == (1000,)
    assert _betas(ac)[0].item() == pytest.approx(3.0e-4, rel=0.02)
    assert ac[499].item() == pytest.approx(0.50, abs=5e-3)
    assert ac[999].item() == pytest.approx(3.0e-7, rel=0.01)
    assert _betas(ac)[-1].item() == pytest.approx(0.999)  # the clip


def test_sigmoid_schedule_matches_stldm_numbers():
    ac = sigmoid_schedule(50)
    assert ac[0].item() == pytest.approx(0.99367, abs=1e-5)
    assert ac[24].item() == pytest.approx(0.5, abs=1e-3)
    assert ac[48].item() == pytest.approx(6.3e-3, rel=0.01)
    assert ac[49].item() == pytest.approx(6.3e-6, rel=0.01)
    betas = _betas(ac)
    assert betas[0].item() == pytest.approx(0.0063, rel=0.01)
    assert betas[48].item() == pytest.approx(0.5268, abs=1e-4)


def test_sigmoid_schedule_formula():
    T, start, end, tau = 20, -2.0, 4.0, 0.7
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    curve = [(sig(end / tau) - sig(((u / T) * (end - start) + start) / tau)) / (sig(end / tau) - sig(start / tau))
             for u in range(T + 1)]
    expected = [curve[i + 1] / curve[0] for i in range(T - 1)]  # the last beta (curve -> 0) is clipped
    ac = sigmoid_schedule(T, start, end, tau)
    assert torch.allclose(ac[:-1], torch.tensor(expected, dtype=torch.float64), rtol=1e-12)
    assert ac[-1].item() == pytest.approx(ac[-2].item() * (1 - 0.999), rel=1e-12)


def test_cosine_schedule_formula_and_clip():
    T, s = 100, 0.008
    f = [math.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2 for u in range(T + 1)]
    ac = cosine_schedule(T, s)
    assert torch.allclose(ac[:-1], torch.tensor([f[i + 1] / f[0] for i in range(T - 1)], dtype=torch.float64),
                          rtol=1e-12)
    assert _betas(ac)[-1].item() == pytest.approx(0.999)  # cos(π/2) = 0 would give β = 1


def test_linear_schedule_formula_scaled_by_1000_over_T():
    ac = linear_schedule(100)
    betas = _betas(ac)
    assert betas[0].item() == pytest.approx(1e-3, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.2, rel=1e-12)
    assert torch.allclose(betas, torch.linspace(1e-3, 0.2, 100, dtype=torch.float64), rtol=1e-10)
    assert linear_schedule(1000)[-1].item() == pytest.approx(4.04e-5, rel=0.01)


def test_make_schedule_dispatch_and_errors():
    assert torch.equal(make_schedule("sigmoid", 50, tau=0.5), sigmoid_schedule(50, tau=0.5))
    assert torch.equal(make_schedule("cosine", 10), cosine_schedule(10))
    with pytest.raises(ValueError, match="unknown noise schedule 'quadratic'"):
        make_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="positive int"):
        sigmoid_schedule(0)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
def test_schedules_decrease_strictly_in_unit_interval(name):
    ac = make_schedule(name, 1000)
    assert (ac > 0).all() and (ac < 1).all() and (ac[1:] < ac[:-1]).all()
