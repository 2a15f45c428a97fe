"""Exceedance-probability scores (Brier, reliability, ROC) against pysteps.verification on random ensembles."""

import numpy as np
import pytest
from pysteps.postprocessing.ensemblestats import excprob
from pysteps.verification import probscores

from nowcast_pl.metrics import (
    ExceedanceProbabilityScores,
)
from tests.helpers.ensembles import LEADS, MEMBERS, ensemble_fields, lead_slice, pysteps_members


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
