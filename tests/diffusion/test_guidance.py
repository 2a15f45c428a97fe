"""Classifier-free guidance (``guided``) and condition dropout (``drop_condition``)."""

import pytest
import torch

from nowcast_pl.diffusion import (
    drop_condition,
    guided,
)


class CountingNetwork:
    """network_fn(x_t, t, cond) = x_t * 2 + cond.sum over trailing dims + t, counting calls and batch sizes."""

    def __init__(self):
        self.batches = []

    def __call__(self, x_t, t, cond):
        self.batches.append(x_t.shape[0])
        c = cond[0] if isinstance(cond, tuple) else cond
        return 2 * x_t + c.flatten(1).sum(1).view(-1, 1) + t.view(-1, 1).float()


def test_guidance_scale_zero_is_the_conditional_network_with_one_call():
    net = CountingNetwork()
    x, t, cond = torch.randn(3, 4), torch.tensor([1, 2, 3]), torch.randn(3, 5)
    out = guided(net, cond, torch.zeros_like(cond), 0.0)(x, t)
    assert torch.equal(out, net(x, t, cond)) and net.batches == [3, 3]


@pytest.mark.parametrize("batched", [False, True])
def test_guidance_combines_conditional_and_unconditional(batched):
    net = CountingNetwork()
    x, t = torch.randn(3, 4), torch.tensor([1, 2, 3])
    cond, null = (torch.randn(3, 5), torch.randn(3, 2)), (torch.zeros(3, 5), torch.zeros(3, 2))
    w = 1.5
    out = guided(net, cond, null, w, batched=batched)(x, t)
    expected = (1 + w) * net(x, t, cond) - w * net(x, t, null)
    assert torch.allclose(out, expected, atol=1e-5)
    assert net.batches[:-2] == ([6] if batched else [3, 3])


def test_guidance_per_time_scale_vector():
    net = CountingNetwork()
    x, t, cond = torch.randn(2, 4), torch.tensor([0, 3]), torch.randn(2, 5)
    scale = torch.tensor([0.0, 0.0, 0.0, 2.0])
    out = guided(net, cond, torch.zeros_like(cond), scale)(x, t)
    c, u = net(x, t, cond), net(x, t, torch.zeros_like(cond))
    assert torch.allclose(out[0], c[0]) and torch.allclose(out[1], 3 * c[1] - 2 * u[1], atol=1e-5)


def test_drop_condition_per_sample_statistics_and_zeroing():
    cond = (torch.ones(20000, 3), {"ctx": torch.full((20000, 2, 2), 2.0)})
    dropped = drop_condition(cond, 0.15, generator=torch.Generator().manual_seed(0))
    rows_zero = dropped[0].eq(0).all(1)
    assert rows_zero.float().mean().item() == pytest.approx(0.15, abs=0.01)
    assert torch.equal(dropped[1]["ctx"].eq(0).flatten(1).all(1), rows_zero)  # same rows in every leaf
    assert dropped[1]["ctx"][~rows_zero].eq(2.0).all()
    assert torch.equal(drop_condition(cond[0], 1.0), torch.zeros(20000, 3))
    assert torch.equal(drop_condition(cond[0], 0.0), cond[0])


def test_drop_condition_per_batch_drops_all_or_nothing():
    g = torch.Generator().manual_seed(1)
    outcomes = []
    for _ in range(2000):
        out = drop_condition(torch.ones(4, 3), 0.15, generator=g, per_batch=True)
        assert out.eq(0).all() or out.eq(1).all()
        outcomes.append(out.eq(0).all().item())
    assert sum(outcomes) / 2000 == pytest.approx(0.15, abs=0.03)
    with pytest.raises(ValueError, match="drop probability"):
        drop_condition(torch.ones(2), 1.5)
