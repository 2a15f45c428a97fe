"""Forward process, ε/x0/v conversions and the weighted loss, in float64 against hand computations."""

import pytest
import torch

from nowcast_pl.diffusion import (
    diffusion_loss,
    eps_from_v,
    eps_from_x0,
    loss_weight,
    model_output_to_x0,
    q_sample,
    sigmoid_schedule,
    target_for,
    v_target,
    x0_from_eps,
    x0_from_v,
)

AC = sigmoid_schedule(50)


def _data(seed=0, shape=(4, 3, 5, 5)):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 17, 24, 49])
    return x0, eps, t


def test_q_sample_formula():
    x0, eps, t = _data()
    x_t = q_sample(x0, t, eps, AC)
    for i, ti in enumerate(t.tolist()):
        expected = AC[ti].sqrt() * x0[i] + (1 - AC[ti]).sqrt() * eps[i]
        assert torch.allclose(x_t[i], expected, rtol=0, atol=1e-14)


def test_conversions_round_trip_exactly():
    x0, eps, t = _data()
    x_t = q_sample(x0, t, eps, AC)
    v = v_target(x0, eps, t, AC)
    tol = dict(rtol=0, atol=1e-10)
    assert torch.allclose(x0_from_eps(x_t, t, eps, AC), x0, **tol)
    assert torch.allclose(eps_from_x0(x_t, t, x0, AC), eps, **tol)
    assert torch.allclose(x0_from_v(x_t, t, v, AC), x0, **tol)
    assert torch.allclose(eps_from_v(x_t, t, v, AC), eps, **tol)
    for objective, output in (("eps", eps), ("x0", x0), ("v", v)):
        assert torch.allclose(model_output_to_x0(output, x_t, t, AC, objective), x0, **tol)
        assert torch.equal(target_for(objective, x0, eps, t, AC), output)


def test_v_target_formula():
    x0, eps, t = _data()
    v = v_target(x0, eps, t, AC)
    i, ti = 2, 24
    assert torch.allclose(v[i], AC[ti].sqrt() * eps[i] - (1 - AC[ti]).sqrt() * x0[i], atol=1e-15)


def test_q_sample_statistics():
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((20000, 4), 0.7, dtype=torch.float64)
    t = torch.full((20000,), 24)
    x_t = q_sample(x0, t, torch.randn(x0.shape, generator=g, dtype=torch.float64), AC)
    alpha, sigma = AC[24].sqrt().item(), (1 - AC[24]).sqrt().item()
    assert x_t.mean().item() == pytest.approx(alpha * 0.7, abs=4 * sigma / 280)  # 4 standard errors
    assert x_t.std().item() == pytest.approx(sigma, rel=0.02)


def test_loss_weights_official_and_plain():
    t = torch.tensor([0, 24, 49])
    ac = AC[t]
    snr = ac / (1 - ac)
    assert torch.equal(loss_weight(t, AC, "eps", "official"), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(loss_weight(t, AC, "x0", "official"), snr, rtol=1e-12)
    assert torch.allclose(loss_weight(t, AC, "v", "official"), ac, rtol=1e-12)
    for objective in ("eps", "x0", "v"):
        assert torch.equal(loss_weight(t, AC, objective, "plain"), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown loss weighting 'snr'"):
        loss_weight(t, AC, "v", "snr")
    with pytest.raises(ValueError, match="unknown diffusion objective 'score'"):
        loss_weight(t, AC, "score", "plain")


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
@pytest.mark.parametrize("weighting", ["official", "plain"])
def test_diffusion_loss_equals_hand_computation(objective, weighting):
    x0, eps, t = _data()
    output = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    target = {"eps": eps, "x0": x0, "v": v_target(x0, eps, t, AC)}[objective]
    total = 0.0
    for i, ti in enumerate(t.tolist()):
        ac, mse = AC[ti].item(), ((output[i] - target[i]) ** 2).mean().item()
        weight = 1.0 if weighting == "plain" else {"eps": 1.0, "x0": ac / (1 - ac), "v": ac}[objective]
        total += weight * mse / len(t)
    loss = diffusion_loss(output, x0, eps, t, AC, objective=objective, weighting=weighting)
    assert loss.item() == pytest.approx(total, rel=1e-12)


def test_official_weighted_losses_all_equal_the_implied_eps_mse():
    x0, eps, t = _data(shape=(4, 2, 3, 3))
    t = torch.tensor([3, 17, 24, 40])  # avoid t=49 where x0-weight SNR amplifies rounding
    x_t = q_sample(x0, t, eps, AC)
    v_hat = v_target(x0, eps, t, AC) + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2),
                                                          dtype=torch.float64)
    eps_hat, x0_hat = eps_from_v(x_t, t, v_hat, AC), x0_from_v(x_t, t, v_hat, AC)
    eps_mse = ((eps_hat - eps) ** 2).flatten(1).mean(1).mean().item()
    for objective, output in (("v", v_hat), ("eps", eps_hat), ("x0", x0_hat)):
        loss = diffusion_loss(output, x0, eps, t, AC, objective=objective, weighting="official")
        assert loss.item() == pytest.approx(eps_mse, rel=1e-10)


def test_diffusion_loss_mask_averages_valid_elements_per_sample():
    x0, eps, t = _data(shape=(4, 6))
    output = torch.zeros_like(x0)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, :2] = True
    mask[3] = False  # a sample with nothing valid adds 0
    loss = diffusion_loss(output, x0, eps, t, AC, objective="eps", weighting="plain", mask=mask)
    expected = sum((eps[i, :2] ** 2).mean().item() for i in range(3)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-12)
