"""Classifier-free guidance, condition dropout, seeded generators and batch independence of samples."""

import pytest
import torch

from nowcast_pl.diffusion import (
    ddim_sample,
    ddpm_sample,
    dpmpp_2m_sample,
    drop_condition,
    guided,
    member_generators,
    member_seed,
    randn_like_rows,
    sigmoid_schedule,
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


def test_member_seed_is_stable_and_distinct():
    assert member_seed(0, 5, 1) == member_seed(0, 5, 1)
    seeds = {member_seed(s, w, m) for s in range(3) for w in range(3) for m in range(3)}
    assert len(seeds) == 27 and all(0 <= v < 2**63 for v in seeds)
    with pytest.raises(ValueError, match="window=-1"):
        member_seed(0, -1, 0)
    with pytest.raises(ValueError, match="one window per member"):
        member_generators(0, [1, 2], [0])


def test_randn_like_rows_row_generators_and_global_rng():
    rows = randn_like_rows((3, 2, 2), member_generators(7, [0, 0, 1], [0, 1, 0]))
    alone = randn_like_rows((1, 2, 2), member_generators(7, [0], [1]))
    assert torch.equal(rows[1:2], alone) and not torch.equal(rows[0], rows[1])
    torch.manual_seed(4)
    reference = torch.randn(2, 3, dtype=torch.float64)
    torch.manual_seed(4)
    assert torch.equal(randn_like_rows((2, 3), None, dtype=torch.float64), reference)
    assert randn_like_rows((2, 3), torch.Generator(), dtype=torch.float16).dtype == torch.float16
    with pytest.raises(ValueError, match="got 2 generators for a batch of 3 rows"):
        randn_like_rows((3, 1), [torch.Generator(), torch.Generator()])


def _row_network(x, t):
    return 0.8 * x.tanh() + 0.01 * t.view(-1, *[1] * (x.dim() - 1))


@pytest.mark.parametrize("sampler,kwargs", [(ddim_sample, {"steps": 5, "eta": 1.0}), (ddpm_sample, {}),
                                             (dpmpp_2m_sample, {"steps": 5})])
def test_same_generators_same_sample_and_batch_independence(sampler, kwargs):
    ac = sigmoid_schedule(20)
    windows, members = [3, 3, 8], [0, 1, 0]
    batch = sampler(_row_network, (3, 2, 4), ac, generator=member_generators(0, windows, members), **kwargs)
    again = sampler(_row_network, (3, 2, 4), ac, generator=member_generators(0, windows, members), **kwargs)
    assert torch.equal(batch, again)
    for i in range(3):
        alone = sampler(_row_network, (1, 2, 4), ac, generator=member_generators(0, windows[i:i + 1],
                                                                                   members[i:i + 1]), **kwargs)
        assert torch.equal(batch[i:i + 1], alone)
    single = sampler(_row_network, (3, 2, 4), ac, generator=torch.Generator().manual_seed(2), **kwargs)
    assert torch.equal(single, sampler(_row_network, (3, 2, 4), ac, generator=torch.Generator().manual_seed(2),
                                       **kwargs))
