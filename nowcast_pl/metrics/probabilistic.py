"""Scores of the ensemble's exceedance probability at thresholds: Brier score, reliability diagram, ROC.

The forecast probability of the event "value ≥ τ" at a pixel is the fraction k/N of the N members that
exceed τ (pysteps ``postprocessing.ensemblestats.excprob``); the observed event is "observation ≥ τ". The one
state, int64 ``(thresholds, lead_times, N + 1, 2)``, counts valid pixels per (number of members k exceeding,
observed event yes/no). Every score below is derived from it exactly, so it is exact under DDP.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from nowcast_pl.metrics.categorical import threshold_label
from nowcast_pl.metrics.ensemble import check_members, ensemble_size
from nowcast_pl.metrics.inputs import as_ensemble, lead_time_scores, positive_int, warn_if_undefined


def probability_label(probability: float) -> str:
    """Key label of a probability threshold: 0.30000000000000004 -> "0.3", 1.0 -> "1"."""
    return f"{probability:.4g}"


def roc_points(counts: Tensor, probability_thresholds: Tensor) -> tuple[Tensor, Tensor]:
    """POFD and POD of "P ≥ p" for each p, from (..., N + 1, 2) counts of (k members exceeding, event).

    Returns:
        ``(pofd, pod)``, each (..., n_thresholds) float64 (NaN where undefined), as pysteps ``ROC_curve``.
    """
    members = counts.shape[-2] - 1
    probability = torch.arange(members + 1, dtype=torch.float64, device=counts.device) / members
    forecast_yes = (probability[:, None] >= probability_thresholds.to(counts.device)[None]).to(torch.float64)
    no_event, event = counts.to(torch.float64).unbind(dim=-1)
    hits = torch.einsum("...k,kp->...p", event, forecast_yes)
    false_alarms = torch.einsum("...k,kp->...p", no_event, forecast_yes)
    return false_alarms / no_event.sum(dim=-1, keepdim=True), hits / event.sum(dim=-1, keepdim=True)


def roc_area(pofd: Tensor, pod: Tensor) -> Tensor:
    """Trapezoidal area under the ROC curve closed at (1, 1) and (0, 0), as pysteps ``ROC_curve(compute_area)``.

    Args:
        pofd, pod: (..., P) points for increasing probability thresholds (POFD decreasing).
    """
    area = (1.0 - pofd[..., 0]) * (1.0 + pod[..., 0]) / 2.0
    area = area + ((pofd[..., :-1] - pofd[..., 1:]) * (pod[..., 1:] + pod[..., :-1]) / 2.0).sum(dim=-1)
    return area + pofd[..., -1] * pod[..., -1] / 2.0


class ExceedanceProbabilityScores(Metric):
    """Brier score, reliability diagram and ROC curve of the exceedance probability at each threshold.

    Keys of :meth:`compute` (``thr`` = :func:`threshold_label` + ``unit``):

    - ``brier@{thr}``, ``brier@{thr}/lead_{t:02d}``: mean (P − O)² over valid pixels per lead time, and the
      mean over lead times (Brier 1950).
    - ``roc_auc@{thr}``, ``roc_auc@{thr}/lead_{t:02d}``: area under the ROC curve, all lead times pooled
      and per lead time.
    - ``roc_pod@{thr}/p_{p}``, ``roc_pofd@{thr}/p_{p}``: the ROC curve over all lead times, one point per
      probability threshold p ("P ≥ p" is a forecast event), e.g. ``roc_pod@20dBZ/p_0.3``.
    - ``rel_forecast@{thr}/bin_{b:02d}``, ``rel_observed@{thr}/bin_{b:02d}``, ``rel_count@{thr}/bin_{b:02d}``:
      the reliability diagram over all lead times (mean forecast probability, observed frequency and pixel
      count per probability bin; pysteps ``reldiag`` bins: edges ``linspace(-1e-6, 1 + 1e-6, bins + 1)``,
      a value on an edge goes to the lower bin). Empty bins are NaN: with N members only N + 1
      probabilities occur, so some bins are empty by construction and are not warned about.

    Args:
        thresholds: event thresholds τ, evaluation value space.
        members: N, ensemble size in every update (≥ 2).
        lead_times: T, number of lead times in every update.
        reliability_bins: number of probability bins of the reliability diagram.
        probability_thresholds: the ROC's probability thresholds; an int n means ``numpy.linspace(0, 1, n)``
            (pysteps ``ROC_curve_init(n_prob_thrs=n)``).
        unit: appended to threshold labels in keys, e.g. "dBZ".
        require_mask: raise in :meth:`update` if no mask is given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False
    takes_members = True

    def __init__(
        self,
        thresholds: Sequence[float],
        *,
        members: int,
        lead_times: int,
        reliability_bins: int = 10,
        probability_thresholds: int | Sequence[float] = 11,
        unit: str = "",
        require_mask: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.thresholds = tuple(float(threshold) for threshold in thresholds)
        if not self.thresholds or len(set(self.thresholds)) != len(self.thresholds):
            raise ValueError(f"thresholds must be non-empty and distinct, got {list(thresholds)}")
        self.members = ensemble_size(members)
        self.lead_times = positive_int(lead_times, "lead_times")
        self.bin_edges = np.linspace(-1e-6, 1 + 1e-6, positive_int(reliability_bins, "reliability_bins") + 1)
        self.probability_thresholds = _probability_thresholds(probability_thresholds)
        self.unit, self.require_mask = unit, require_mask
        shape = (len(self.thresholds), lead_times, members + 1, 2)
        self.add_state("exceedance_counts", torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, members: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Count (members exceeding, observed event) per valid pixel; shapes and units as in ``as_ensemble``."""
        members, target, valid = as_ensemble(
            members, target, mask, lead_times=self.lead_times, require_mask=self.require_mask
        )
        check_members(members, self.members, type(self).__name__)
        side = 2 * (self.members + 1)
        lead = torch.arange(self.lead_times, device=target.device).view(1, -1, 1, 1)
        for index, threshold in enumerate(self.thresholds):
            exceeding = (members >= threshold).sum(dim=1)
            cell = (lead * side + 2 * exceeding + (target >= threshold))[valid]
            counts = torch.bincount(cell, minlength=self.lead_times * side)
            self.exceedance_counts[index] += counts.view(self.lead_times, self.members + 1, 2)

    def compute(self) -> dict[str, Tensor]:
        """Return the keys listed in the class docstring, float32 scalars."""
        counts = self.exceedance_counts.to(torch.float64)
        probability = torch.arange(self.members + 1, dtype=torch.float64, device=counts.device) / self.members
        squared_error = torch.stack([probability.square(), (1 - probability).square()], dim=-1)
        brier = (counts * squared_error).sum(dim=(-2, -1)) / counts.sum(dim=(-2, -1))
        thresholds = torch.from_numpy(self.probability_thresholds)
        per_lead_auc = roc_area(*roc_points(counts, thresholds))
        pofd, pod = roc_points(counts.sum(dim=1), thresholds)
        pooled_auc = roc_area(pofd, pod)
        reliability = self._reliability(counts.sum(dim=1), probability)
        scores: dict[str, Tensor] = {}
        for index, threshold in enumerate(self.thresholds):
            label = f"{threshold_label(threshold)}{self.unit}"
            scores |= lead_time_scores(f"brier@{label}", brier[index])
            scores |= lead_time_scores(f"roc_auc@{label}", per_lead_auc[index], pooled_auc[index])
            for point, value in enumerate(self.probability_thresholds):
                key = f"@{label}/p_{probability_label(value)}"
                scores[f"roc_pod{key}"], scores[f"roc_pofd{key}"] = pod[index, point], pofd[index, point]
            for name, values in reliability.items():
                scores |= {f"{name}@{label}/bin_{b:02d}": value for b, value in enumerate(values[index])}
        scores = {key: value.to(torch.float32) for key, value in scores.items()}
        warn_if_undefined({key: value for key, value in scores.items() if not key.startswith("rel_")},
                          type(self).__name__, "no observed event or no non-event")
        return scores

    def _reliability(self, counts: Tensor, probability: Tensor) -> dict[str, Tensor]:
        """(K, bins) mean forecast probability, observed frequency and count from (K, N + 1, 2) counts."""
        edges = torch.from_numpy(self.bin_edges).to(counts.device)
        bin_of_count = torch.bucketize(probability, edges) - 1
        one_hot = torch.nn.functional.one_hot(bin_of_count, len(self.bin_edges) - 1).to(torch.float64)
        pixels = torch.einsum("kn,nb->kb", counts.sum(dim=-1), one_hot)
        events = torch.einsum("kn,nb->kb", counts[..., 1], one_hot)
        probability_sum = torch.einsum("kn,n,nb->kb", counts.sum(dim=-1), probability, one_hot)
        return {"rel_forecast": probability_sum / pixels, "rel_observed": events / pixels, "rel_count": pixels}


def _probability_thresholds(value: int | Sequence[float]) -> np.ndarray:
    thresholds = np.linspace(0.0, 1.0, value) if isinstance(value, int) else np.asarray(value, dtype=np.float64)
    if thresholds.ndim != 1 or thresholds.size < 2 or np.any(np.diff(thresholds) <= 0):
        raise ValueError(f"probability_thresholds must give >= 2 increasing values, got {value!r}")
    labels = [probability_label(p) for p in thresholds]
    if len(set(labels)) != len(labels):
        raise ValueError(f"probability_thresholds {value!r} give duplicate key labels {labels}")
    return thresholds
