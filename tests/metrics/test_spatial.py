"""Fractions skill score, deterministic and ensemble, against pysteps.verification and scipy's uniform filter."""

import numpy as np
import pytest
import torch
from pysteps.verification import spatialscores
from scipy.ndimage import uniform_filter

from nowcast_pl.metrics import (
    EnsembleFSS,
    FractionsSkillScore,
)
from nowcast_pl.metrics.spatial import neighbourhood_fractions
from tests.helpers.ensembles import LEADS, MEMBERS, ensemble_fields


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
