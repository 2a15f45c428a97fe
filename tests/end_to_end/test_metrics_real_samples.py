"""Ensemble, probabilistic, spatial and categorical metrics against pysteps on forecasts of the real FMI/BoM samples.

The forecasts are a lagged-persistence ensemble (member n at time t is the observation at t − 1 − n), decoded
in float64 from the stores' integer encodings, so values are quantised (0.5 dBZ, 0.05 mm) and many lie exactly
on the thresholds, and NaN marks pixels outside radar coverage. Skipped when the samples are absent.
"""

import warnings

import numpy as np
import pytest
import torch
from pysteps.postprocessing.ensemblestats import excprob
from pysteps.verification import detcatscores, ensscores, probscores, spatialscores

from nowcast_pl.data.store import RadarStore
from nowcast_pl.metrics import (
    CategoricalScores,
    EnsembleCRPS,
    ExceedanceProbabilityScores,
    FractionsSkillScore,
    RankHistogram,
)

MEMBERS, LEADS = 4, 3
# store fixture, first target frame, crop (rows, columns), thresholds (evaluation units), no-echo fill value
CASES = {
    "fmi": ("fmi_sample_store", 34, (slice(300, 556), slice(200, 456)), (20.0, 30.0), -32.0),
    "bom": ("bom_sample_store", 40, (slice(128, 384), slice(128, 384)), (0.1, 0.3), 0.0),
}


def decode_float64(store: RadarStore, start: int, stop: int, crop) -> np.ndarray:
    """(stop − start, h, w) float64 physical values of the crop, NaN where no data."""
    raw = store.read_raw(start, stop)[:, crop[0], crop[1]]
    encoding = store.encoding
    values = raw.astype(np.float64) * encoding.scale_factor + encoding.add_offset
    values[raw == encoding.fill_value] = np.nan
    return values


@pytest.fixture(params=sorted(CASES))
def lagged_ensemble(request):
    """(name, members (1, N, T, h, w), target (1, T, h, w), thresholds, fill) as float64 tensors with NaN."""
    fixture, first, crop, thresholds, fill = CASES[request.param]
    store = RadarStore(request.getfixturevalue(fixture))
    frames = decode_float64(store, first - MEMBERS, first + LEADS, crop)
    target = frames[MEMBERS:]
    members = np.stack([frames[MEMBERS - 1 - n : MEMBERS - 1 - n + LEADS] for n in range(MEMBERS)])
    assert np.isnan(frames).any() or request.param == "bom"
    assert np.nanmean(target >= thresholds[0]) > 0.02, "the crop should hold rain"
    return request.param, torch.from_numpy(members[None]), torch.from_numpy(target[None]), thresholds, fill


def member_first(members: torch.Tensor) -> np.ndarray:
    return members[0].numpy().reshape(MEMBERS, -1)


def test_crps_and_rank_histogram_match_pysteps(lagged_ensemble):
    _, members, target, thresholds, _ = lagged_ensemble
    crps = EnsembleCRPS(members=MEMBERS, lead_times=LEADS)
    crps.update(members, target)
    valid = np.isfinite(member_first(members)).all(axis=0) & np.isfinite(target.numpy().ravel())
    forecast, observed = member_first(members)[:, valid], target.numpy().ravel()[valid]
    pairwise = np.abs(forecast[:, None] - forecast[None]).sum(axis=(0, 1))
    expected = np.mean(np.abs(forecast - observed).mean(axis=0) - pairwise / (2 * MEMBERS**2))
    observed = target.numpy().ravel()
    assert crps.compute()["crps"].item() == pytest.approx(expected, rel=1e-6)
    # pysteps' CRPS drops the interval of a member tied with the observation (probscores.CRPS([[1], [2], [3]],
    # [2]) is 0, the integral is 2/9), so it is compared where ties are broken by a tiny offset.
    offset = (torch.arange(MEMBERS, dtype=torch.float64).view(1, -1, 1, 1, 1) + 1) * 1e-6
    jittered = EnsembleCRPS(members=MEMBERS, lead_times=LEADS)
    jittered.update(members + offset, target)
    expected = probscores.CRPS(member_first(members + offset), target.numpy().ravel())
    assert jittered.compute()["crps"].item() == pytest.approx(expected, rel=1e-5)
    histogram = RankHistogram(members=MEMBERS, lead_times=LEADS, min_value=thresholds[0])
    histogram.update(members, target)
    scores = histogram.compute()
    np.random.seed(0)  # pysteps breaks the many ties of quantised values at random; we count their expectation
    expected = ensscores.rankhist(member_first(members), observed, X_min=thresholds[0])
    got = [scores[f"rank_hist/bin_{rank:02d}"].item() for rank in range(MEMBERS + 1)]
    np.testing.assert_allclose(got, expected, atol=0.01)
    assert sum(got) == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide")
def test_probability_scores_match_pysteps(lagged_ensemble):
    _, members, target, thresholds, _ = lagged_ensemble
    metric = ExceedanceProbabilityScores(thresholds, members=MEMBERS, lead_times=LEADS, probability_thresholds=10)
    metric.update(members, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric.compute()
    for threshold in thresholds:
        label = f"{threshold:g}"
        probability = excprob(member_first(members)[:, :, None], threshold)[:, 0]
        observed = target.numpy().ravel()
        *_, area = probscores.ROC_curve(probability, observed, threshold, n_prob_thrs=10, compute_area=True)
        assert scores[f"roc_auc@{label}"].item() == pytest.approx(area, rel=1e-6)
        forecast_mean, frequency = probscores.reldiag(probability, observed, threshold, n_bins=10, min_count=1)
        got = [scores[f"rel_observed@{label}/bin_{b:02d}"].item() for b in range(10)]
        np.testing.assert_allclose(got, frequency, rtol=1e-6)
        got = [scores[f"rel_forecast@{label}/bin_{b:02d}"].item() for b in range(10)]
        np.testing.assert_allclose(got, forecast_mean, rtol=1e-6)


@pytest.mark.parametrize("scale", [1, 8])
def test_fss_matches_pysteps(lagged_ensemble, scale):
    _, members, target, thresholds, fill = lagged_ensemble
    forecast, observed = members[:, 0].nan_to_num(fill), target.nan_to_num(fill)  # pysteps sums over every pixel
    metric = FractionsSkillScore(thresholds, scales=[scale], lead_times=LEADS)
    metric.update(forecast, observed)
    scores = metric.compute()
    for threshold in thresholds:
        state = spatialscores.fss_init(threshold, scale)
        for lead in range(LEADS):
            spatialscores.fss_accum(state, forecast[0, lead].numpy(), observed[0, lead].numpy())
        assert scores[f"fss@{threshold:g}/s{scale}"].item() == pytest.approx(spatialscores.fss_compute(state), rel=1e-6)


def test_categorical_scores_of_quantised_float64_values_equal_pysteps(lagged_ensemble):
    _, members, target, thresholds, fill = lagged_ensemble
    forecast, target = members[:, 0].nan_to_num(fill), target.nan_to_num(fill)  # pysteps counts NaN as no event
    metric = CategoricalScores(thresholds, lead_times=LEADS, comparison=">", aggregation="global")
    metric.update(forecast, target)
    scores = metric.compute()
    for threshold in thresholds:
        expected = detcatscores.det_cat_fct(forecast.numpy(), target.numpy(), threshold, scores=("CSI", "HSS"))
        assert scores[f"csi@{threshold:g}"].item() == pytest.approx(expected["CSI"], rel=1e-6)
        assert scores[f"hss@{threshold:g}"].item() == pytest.approx(expected["HSS"], rel=1e-6)
