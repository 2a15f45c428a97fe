"""Ensemble metrics (CRPS, rank histogram, spread-skill) against pysteps.verification; masks; DDP sync."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from pysteps.verification import ensscores, probscores

from nowcast_pl.metrics import (
    EnsembleCRPS,
    ExceedanceProbabilityScores,
    RankHistogram,
    SpreadSkillRatio,
    build_metrics,
    flatten_scores,
)
from tests.helpers.ensembles import LEADS, MEMBERS, ensemble_fields, lead_slice, pysteps_members
from tests.helpers.gloo import results_of_two_gloo_ranks


def test_crps_standard_equals_pysteps_and_fair_equals_its_definition():
    members, target = ensemble_fields(seed=0)
    metric = EnsembleCRPS(members=MEMBERS, lead_times=LEADS)
    metric.update(members[:1], target[:1])
    metric.update(members[1:], target[1:])
    scores = metric.compute()
    for lead in range(LEADS):
        expected = probscores.CRPS(*lead_slice(members, target, lead))
        assert scores[f"crps/lead_{lead + 1:02d}"].item() == pytest.approx(expected, rel=1e-6)
    assert scores["crps"].item() == pytest.approx(probscores.CRPS(pysteps_members(members), target.numpy().ravel()))
    pairwise = (members[:, :, None] - members[:, None]).abs().sum(dim=(1, 2))
    fair = (members - target[:, None]).abs().mean(dim=1) - pairwise / (2 * MEMBERS * (MEMBERS - 1))
    assert scores["crps_fair"].item() == pytest.approx(fair.mean().item(), rel=1e-6)
    assert scores["crps_fair"] < scores["crps"]  # the fair form removes the small-ensemble spread penalty


def test_crps_of_one_repeated_member_is_the_mean_absolute_error():
    _, target = ensemble_fields(seed=1)
    forecast = target + 3.0
    metric = EnsembleCRPS(members=4, lead_times=LEADS)
    metric.update(forecast[:, None].expand(-1, 4, -1, -1, -1), target)
    scores = metric.compute()
    assert scores["crps"].item() == pytest.approx(3.0) and scores["crps_fair"].item() == pytest.approx(3.0)


def test_rank_histogram_equals_pysteps_without_ties():
    members, target = ensemble_fields(seed=2)
    metric = RankHistogram(members=MEMBERS, lead_times=LEADS)
    metric.update(members, target)
    scores = metric.compute()
    expected = ensscores.rankhist(pysteps_members(members), target.numpy().ravel(), normalize=True)
    got = [scores[f"rank_hist/bin_{rank:02d}"].item() for rank in range(MEMBERS + 1)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert scores["rank_hist/count"].item() == target.numel()


def test_rank_histogram_splits_ties_evenly_and_applies_min_value():
    members = torch.tensor([1.0, 2.0, 2.0, 5.0]).view(1, 4, 1, 1, 1).repeat(1, 1, 1, 1, 3)
    target = torch.tensor([2.0, 0.0, 0.5]).view(1, 1, 1, 3)
    members[0, :, 0, 0, 2] = torch.tensor([0.1, 0.2, 0.3, 0.4])  # all below min_value with the observation
    metric = RankHistogram(members=4, lead_times=1, min_value=0.9)
    metric.update(members, target)
    scores = metric.compute()
    # pixel 0: observation 2 ties members 2 and 3 (one below): ranks 1, 2, 3 get 1/3 each;
    # pixel 1: observation 0 < 0.9 -> set to -0.1, below every member: rank 0; pixel 2 is skipped.
    expected = [1.0, 1 / 3, 1 / 3, 1 / 3, 0.0]
    got = [scores[f"rank_hist/bin_{rank:02d}"].item() * 2 for rank in range(5)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert scores["rank_hist/count"].item() == 2


def test_spread_skill_is_one_for_a_consistent_ensemble_and_matches_numpy():
    generator = torch.Generator().manual_seed(7)
    truth_and_members = torch.randn((4, 9, LEADS, 24, 24), generator=generator, dtype=torch.float64) * 5
    members, target = truth_and_members[:, 1:], truth_and_members[:, 0]  # exchangeable with the observation
    metric = SpreadSkillRatio(members=8, lead_times=LEADS)
    metric.update(members, target)
    scores = metric.compute()
    assert scores["spread_skill"].item() == pytest.approx(1.0, abs=0.03)
    variance = members.numpy().var(axis=1, ddof=1).mean()
    mse = ((members.numpy().mean(axis=1) - target.numpy()) ** 2).mean()
    assert scores["spread_skill"].item() == pytest.approx(np.sqrt(9 / 8 * variance / mse), rel=1e-6)
    narrow = SpreadSkillRatio(members=8, lead_times=LEADS)
    narrow.update(members * 0.5, target)
    assert narrow.compute()["spread_skill"] < 0.6


def test_masked_and_non_finite_pixels_are_excluded_from_every_ensemble_metric():
    members, target = ensemble_fields(seed=8)
    mask = torch.rand(target.shape, generator=torch.Generator().manual_seed(0)) > 0.3
    spoiled_members, spoiled_target = members.clone(), target.clone()
    spoiled_members[:, 2][~mask] = float("nan")
    spoiled_target[~mask] = 1e6
    for build in (lambda: EnsembleCRPS(members=MEMBERS, lead_times=LEADS),
                  lambda: RankHistogram(members=MEMBERS, lead_times=LEADS),
                  lambda: ExceedanceProbabilityScores([20.0], members=MEMBERS, lead_times=LEADS),
                  lambda: SpreadSkillRatio(members=MEMBERS, lead_times=LEADS)):
        clean, spoiled = build(), build()
        clean.update(members, target, mask)
        spoiled.update(spoiled_members, spoiled_target, mask)
        for key, value in clean.compute().items():
            torch.testing.assert_close(spoiled.compute()[key], value, equal_nan=True)


def test_ensemble_metrics_reject_a_wrong_member_count_and_shapes():
    members, target = ensemble_fields(seed=9)
    with pytest.raises(ValueError, match="members=4"):
        EnsembleCRPS(members=4, lead_times=LEADS).update(members, target)
    with pytest.raises(ValueError, match="members >= 2"):
        RankHistogram(members=1, lead_times=LEADS)
    with pytest.raises(ValueError, match=r"\(B, N, T, H, W\)"):
        SpreadSkillRatio(members=MEMBERS, lead_times=LEADS).update(target, target)
    with pytest.raises(ValueError, match="probability_thresholds"):
        ExceedanceProbabilityScores([1.0], members=2, lead_times=1, probability_thresholds=[0.5, 0.2])


def _ensemble_collection():
    return build_metrics("pysteps", thresholds=(18.0, 25.0), lead_times=LEADS, unit="dBZ", data_range=70.0,
                         members=MEMBERS)


def _gloo_worker(rank: int, world_size: int, rendezvous: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    members, target = ensemble_fields(seed=12, batch=4)
    metrics = _ensemble_collection()
    share = slice(rank * 2, rank * 2 + 2)
    metrics.update(members[share, :, :, None], target[share])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(flatten_scores(metrics.compute()), Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_gloo_ddp_sync_of_ensemble_metrics_equals_single_process():
    """Rank 0 runs here and rank 1 in a spawned process; the synced sums equal one process on all data."""
    members, target = ensemble_fields(seed=12, batch=4)
    single = _ensemble_collection()
    single.update(members[:, :, :, None], target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = flatten_scores(single.compute())
    for synced in results_of_two_gloo_ranks(_gloo_worker):
        assert synced.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(synced[key], value, equal_nan=True, rtol=1e-6, atol=0, msg=key)


def test_crps_with_ties_equals_the_integral_of_the_squared_cdf_difference():
    """pysteps' Hersbach loop gives 0 for members (1, 2, 3) and observation 2; the integral is 2/9."""
    members = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1, 1)
    metric = EnsembleCRPS(members=3, lead_times=1)
    metric.update(members, torch.full((1, 1, 1, 1), 2.0, dtype=torch.float64))
    grid = np.linspace(-5.0, 10.0, 1_500_001)
    cdf = (np.array([1.0, 2.0, 3.0])[:, None] <= grid).mean(axis=0)
    integral = np.trapezoid((cdf - (grid >= 2.0)) ** 2, grid)
    assert metric.compute()["crps"].item() == pytest.approx(integral, rel=1e-5) == pytest.approx(2 / 9)
    assert probscores.CRPS(np.array([[1.0], [2.0], [3.0]]), np.array([2.0])) == 0.0  # the pysteps defect
