"""Seeded per-member generators (``member_seed``, ``randn_like_rows``) and batch independence of samples."""

import pytest
import torch

from nowcast_pl.diffusion import (
    ddim_sample,
    ddpm_sample,
    dpmpp_2m_sample,
    member_generators,
    member_seed,
    randn_like_rows,
    sigmoid_schedule,
)


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
