"""Metric protocols (``build_metrics``): which scores each protocol reports, with one or several members."""

import warnings

import numpy as np
import pytest
import torch

from nowcast_pl.metrics import (
    build_metrics,
    curve_points,
    flatten_scores,
)
from tests.helpers.ensembles import LEADS, MEMBERS, ensemble_fields


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
