"""Ensemble, probabilistic and spatial metrics against pysteps.verification on random fields; protocols; DDP."""

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pysteps.postprocessing.ensemblestats import excprob
from pysteps.verification import ensscores, probscores, spatialscores
from scipy.ndimage import uniform_filter

from nowcast_pl.metrics import (
    EnsembleCRPS,
    EnsembleFSS,
    ExceedanceProbabilityScores,
    FractionsSkillScore,
    RankHistogram,
    SpreadSkillRatio,
    build_metrics,
    curve_points,
    flatten_scores,
)
from nowcast_pl.metrics.spatial import neighbourhood_fractions

MEMBERS, LEADS = 5, 3


def ensemble_fields(seed: int, batch: int = 2, members: int = MEMBERS, size: int = 20, dtype=torch.float64):
    """(members (B, N, T, H, W), target (B, T, H, W)): smooth-ish fields around 20 with spread ~10, no ties."""
    generator = torch.Generator().manual_seed(seed)
    common = torch.randn((batch, 1, LEADS, size, size), generator=generator, dtype=dtype) * 8
    spread = torch.randn((batch, members, LEADS, size, size), generator=generator, dtype=dtype) * 6
    target = common[:, 0] + torch.randn((batch, LEADS, size, size), generator=generator, dtype=dtype) * 6
    return 20 + common + spread, 20 + target


def pysteps_members(members: torch.Tensor) -> np.ndarray:
    """(B, N, T, H, W) -> (N, B·T·H·W) numpy, pysteps' member-first layout."""
    return members.transpose(0, 1).reshape(members.shape[1], -1).numpy()


def lead_slice(members, target, lead):
    return pysteps_members(members[:, :, lead]), target[:, lead].reshape(-1).numpy()


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


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")  # pysteps' empty reliability bins
@pytest.mark.parametrize("threshold", [15.0, 25.0])
def test_brier_reliability_and_roc_equal_pysteps(threshold):
    members, target = ensemble_fields(seed=3)
    metric = ExceedanceProbabilityScores([threshold], members=MEMBERS, lead_times=LEADS, unit="dBZ",
                                         probability_thresholds=10)
    metric.update(members, target)
    scores = metric.compute()
    forecast, observed = pysteps_members(members), target.numpy().ravel()
    probability = excprob(forecast[:, :, None], threshold)[:, 0]
    label = f"{threshold:g}dBZ"
    pofd, pod, area = probscores.ROC_curve(probability, observed, threshold, n_prob_thrs=10, compute_area=True)
    assert scores[f"roc_auc@{label}"].item() == pytest.approx(area, rel=1e-6)
    thresholds = np.linspace(0, 1, 10)
    np.testing.assert_allclose([scores[f"roc_pod@{label}/p_{p:.4g}"].item() for p in thresholds], pod, rtol=1e-6)
    np.testing.assert_allclose([scores[f"roc_pofd@{label}/p_{p:.4g}"].item() for p in thresholds], pofd, rtol=1e-6)
    mean_probability, frequency = probscores.reldiag(probability, observed, threshold, n_bins=10, min_count=1)
    got_probability = [scores[f"rel_forecast@{label}/bin_{b:02d}"].item() for b in range(10)]
    got_frequency = [scores[f"rel_observed@{label}/bin_{b:02d}"].item() for b in range(10)]
    np.testing.assert_allclose(got_probability, mean_probability, rtol=1e-6)
    np.testing.assert_allclose(got_frequency, frequency, rtol=1e-6)
    brier = [np.mean((excprob(lead[0][:, :, None], threshold)[:, 0] - (lead[1] >= threshold)) ** 2)
             for lead in (lead_slice(members, target, t) for t in range(LEADS))]
    assert scores[f"brier@{label}/lead_02"].item() == pytest.approx(brier[1], rel=1e-6)
    assert scores[f"brier@{label}"].item() == pytest.approx(np.mean(brier), rel=1e-6)
    for lead in range(LEADS):
        *_, lead_area = probscores.ROC_curve(excprob(lead_slice(members, target, lead)[0][:, :, None], threshold)[:, 0],
                                             lead_slice(members, target, lead)[1], threshold, 10, True)
        assert scores[f"roc_auc@{label}/lead_{lead + 1:02d}"].item() == pytest.approx(lead_area, rel=1e-6)


def test_perfect_probabilities_have_zero_brier_and_unit_auc():
    _, target = ensemble_fields(seed=4)
    members = target[:, None].repeat(1, 3, 1, 1, 1)
    metric = ExceedanceProbabilityScores([20.0], members=3, lead_times=LEADS)
    metric.update(members, target)
    scores = metric.compute()
    assert scores["brier@20"].item() == 0.0 and scores["roc_auc@20"].item() == pytest.approx(1.0)
    assert scores["rel_count@20/bin_00"] + scores["rel_count@20/bin_09"] == target.numel()


@pytest.mark.parametrize("scale", [1, 2, 5, 8, 25])
def test_neighbourhood_fractions_equal_scipy_uniform_filter(scale):
    field = (torch.rand((2, 9, 13), generator=torch.Generator().manual_seed(scale)) > 0.6).double()
    expected = np.stack([uniform_filter(frame, size=scale, mode="constant", cval=0.0) for frame in field.numpy()])
    np.testing.assert_allclose(neighbourhood_fractions(field, scale).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("scale", [1, 4, 5])
def test_deterministic_fss_equals_pysteps(scale):
    members, target = ensemble_fields(seed=5)
    forecast = members[:, 0]
    metric = FractionsSkillScore([20.0, 30.0], scales=[scale], lead_times=LEADS, unit="dBZ")
    metric.update(forecast, target)
    scores = metric.compute()
    for threshold in (20.0, 30.0):
        overall = spatialscores.fss_init(threshold, scale)
        for lead in range(LEADS):
            per_lead = spatialscores.fss_init(threshold, scale)
            for row in range(forecast.shape[0]):
                for state in (overall, per_lead):
                    spatialscores.fss_accum(state, forecast[row, lead].numpy(), target[row, lead].numpy())
            got = scores[f"fss@{threshold:g}dBZ/s{scale}/lead_{lead + 1:02d}"].item()
            assert got == pytest.approx(spatialscores.fss_compute(per_lead), rel=1e-6)
        assert scores[f"fss@{threshold:g}dBZ/s{scale}"].item() == pytest.approx(
            spatialscores.fss_compute(overall), rel=1e-6)


def test_ensemble_fss_uses_the_exceedance_probability_fraction():
    members, target = ensemble_fields(seed=6)
    metric = EnsembleFSS([20.0], members=MEMBERS, scales=[1, 6], lead_times=LEADS)
    metric.update(members, target)
    scores = metric.compute()
    probability = (members >= 20).double().mean(dim=1).numpy()
    observed = (target >= 20).double().numpy()
    for scale in (1, 6):
        f = np.stack([uniform_filter(p, size=scale, mode="constant") for p in probability.reshape(-1, 20, 20)])
        o = np.stack([uniform_filter(x, size=scale, mode="constant") for x in observed.reshape(-1, 20, 20)])
        expected = 1 - np.sum((f - o) ** 2) / (np.sum(f**2) + np.sum(o**2))
        assert scores[f"fss_ens@20/s{scale}"].item() == pytest.approx(expected, rel=1e-6)
    assert scores["fss_ens@20/s6"] > scores["fss_ens@20/s1"]


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


def test_build_metrics_adds_ensemble_scores_only_for_several_members():
    kwargs = {"thresholds": (20.0, 30.0), "lead_times": LEADS, "unit": "dBZ", "data_range": 70.0}
    deterministic = build_metrics("earthformer", **kwargs)
    ensemble = build_metrics("earthformer", members=MEMBERS, **kwargs)
    assert set(ensemble) - set(deterministic) == {"crps", "rank_histogram", "probability", "fss_ens", "spread_skill"}
    members, target = ensemble_fields(seed=10)
    deterministic.update(members[:, 0, :, None], target[:, :, None])
    ensemble.update(members[:, :, :, None], target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single, scores = flatten_scores(deterministic.compute()), flatten_scores(ensemble.compute())
    assert set(single) < set(scores)
    assert {"crps", "crps/lead_03", "brier@20dBZ", "fss_ens@20dBZ/s4", "rank_hist/bin_05", "spread_skill",
            "roc_auc@30dBZ", "rel_observed@20dBZ/bin_09", "roc_pod@20dBZ/p_0.3"} <= set(scores)
    probabilities, pod = curve_points(scores, "roc_pod@20dBZ")
    assert probabilities == pytest.approx(np.linspace(0, 1, 11)) and pod[0] == 1.0 and pod == sorted(pod)[::-1]
    ranks, frequencies = curve_points(scores, "rank_hist")
    assert ranks == list(range(MEMBERS + 1)) and sum(frequencies) == pytest.approx(1.0)
    pooled = build_metrics("earthformer", **kwargs)
    for member in range(MEMBERS):  # deterministic scores pool the members, as STLDM does
        pooled.update(members[:, member], target)
    for key, value in flatten_scores(pooled.compute()).items():
        torch.testing.assert_close(scores[key], value, equal_nan=True)
    with pytest.raises(ValueError, match="ensemble of 5 members"):
        ensemble.update(members[:, 0], target)
    assert "fss_ens" not in build_metrics("earthformer", members=1, **kwargs)


def test_pysteps_protocol_reports_deterministic_fss():
    metrics = build_metrics("pysteps", thresholds=(20.0,), lead_times=LEADS, unit="dBZ", data_range=70.0)
    members, target = ensemble_fields(seed=11, dtype=torch.float32)
    metrics.update(members[:, 0], target)
    scores = flatten_scores(metrics.compute())
    assert {"fss@20dBZ/s1", "fss@20dBZ/s16/lead_03", "csi@20dBZ"} <= set(scores)
    assert 0 < scores["fss@20dBZ/s1"] < scores["fss@20dBZ/s16"] <= 1


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
    with tempfile.TemporaryDirectory() as out_dir:
        args = (2, str(Path(out_dir) / "rendezvous"), out_dir)
        other_rank = mp.get_context("spawn").Process(target=_gloo_worker, args=(1, *args))
        other_rank.start()
        try:
            _gloo_worker(0, *args)
        finally:
            other_rank.join(timeout=60)
        assert other_rank.exitcode == 0
        for rank in range(2):
            synced = torch.load(Path(out_dir) / f"rank{rank}.pt")
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
