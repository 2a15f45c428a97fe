"""Fractions Skill Score (Roberts & Lean 2008) at several neighbourhood scales, deterministic and ensemble.

FSS = 1 − Σ(F − O)² / (ΣF² + ΣO²) (Roberts & Lean 2008, eqs. 5–7), with O the fraction of observed events
(value ≥ τ) in the s × s neighbourhood of each pixel and F the same fraction of forecast events, or, for an
ensemble, the neighbourhood mean of the exceedance probability (fraction of members ≥ τ; Schwartz et al.
2010). As in pysteps ``spatialscores.fss``: fractions use a zero-padded moving average
(``scipy.ndimage.uniform_filter(size=s, mode="constant")``), invalid pixels count as non-events, and the
three sums ΣF², ΣFO, ΣO² are accumulated over the test set (an aggregated FSS, not a mean of per-sample
FSS). Unlike pysteps, sums run over valid pixels only. States are float64 sums of shape
(thresholds, scales, lead_times), ``dist_reduce_fx="sum"``.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from nowcast_pl.metrics.categorical import threshold_label
from nowcast_pl.metrics.ensemble import check_members, ensemble_size
from nowcast_pl.metrics.inputs import as_ensemble, as_frames, lead_time_scores, positive_int, warn_if_undefined


def neighbourhood_fractions(fields: Tensor, scale: int) -> Tensor:
    """Zero-padded s × s moving average of each (H, W) frame, equal to scipy's ``uniform_filter(mode="constant")``.

    Args:
        fields: (..., H, W) float event indicators or probabilities in [0, 1].
        scale: neighbourhood side s in pixels; an even s covers s/2 pixels before and s/2 − 1 after, as scipy.

    Returns:
        (..., H, W) float64 fractions.
    """
    if scale == 1:
        return fields.to(torch.float64)
    *leading, height, width = fields.shape
    before, after = scale // 2, (scale - 1) // 2
    frames = F.pad(fields.to(torch.float64).reshape(-1, 1, height, width), (before, after, before, after))
    return F.avg_pool2d(frames, kernel_size=scale, stride=1).view(*leading, height, width)


def fss_from_sums(forecast_square_sum: Tensor, product_sum: Tensor, observed_square_sum: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """FSS per lead time and from the sums over lead times (Roberts & Lean 2008, eq. 5-7).

    Args:
        forecast_square_sum, product_sum, observed_square_sum: float64 ΣF², ΣFO, ΣO², each (..., T); leading
            axes (thresholds, scales, bootstrap resamples) are kept.

    Returns:
        ``(per_lead (..., T), aggregated (...))``, NaN where ΣF² + ΣO² = 0.
    """
    ff, fo, oo = forecast_square_sum, product_sum, observed_square_sum
    per_lead = 1 - (ff - 2 * fo + oo) / (ff + oo)
    ff, fo, oo = ff.sum(dim=-1), fo.sum(dim=-1), oo.sum(dim=-1)
    return per_lead, 1 - (ff - 2 * fo + oo) / (ff + oo)


class FractionsSkillScore(Metric):
    """FSS per threshold, scale and lead time of a deterministic forecast (update with (B, T, H, W) fields).

    Keys of :meth:`compute`: ``f"{name}@{thr}{unit}/s{scale}"`` from the sums over all lead times, and
    ``f"{name}@{thr}{unit}/s{scale}/lead_{t:02d}"`` per lead time, e.g. ``fss@20dBZ/s8``,
    ``fss@20dBZ/s8/lead_03``; ``name`` is ``fss`` (``fss_ens`` for :class:`EnsembleFSS`). FSS is NaN when
    neither field has an event (ΣF² + ΣO² = 0).

    Args:
        thresholds: event thresholds τ, evaluation value space (event = value ≥ τ).
        scales: neighbourhood sides s in pixels.
        lead_times: T, number of lead times in every update.
        unit: appended to threshold labels in keys, e.g. "dBZ".
        require_mask: raise in :meth:`update` if no mask is given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    name = "fss"

    def __init__(
        self,
        thresholds: Sequence[float],
        *,
        scales: Sequence[int],
        lead_times: int,
        unit: str = "",
        require_mask: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.thresholds = tuple(float(threshold) for threshold in thresholds)
        self.scales = tuple(positive_int(scale, "scales") for scale in scales)
        if not self.thresholds or len(set(self.thresholds)) != len(self.thresholds):
            raise ValueError(f"thresholds must be non-empty and distinct, got {list(thresholds)}")
        if not self.scales or len(set(self.scales)) != len(self.scales):
            raise ValueError(f"scales must be non-empty and distinct, got {list(scales)}")
        self.lead_times = positive_int(lead_times, "lead_times")
        self.unit, self.require_mask = unit, require_mask
        shape = (len(self.thresholds), len(self.scales), lead_times)
        for state in ("forecast_square_sum", "product_sum", "observed_square_sum"):
            self.add_state(state, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate the fraction sums; shapes and units as in :func:`as_frames`."""
        preds, target, valid = as_frames(
            preds, target, mask, lead_times=self.lead_times, require_mask=self.require_mask
        )
        self._accumulate(lambda threshold: (preds >= threshold) & valid, target, valid)

    def _accumulate(self, forecast_events, target: Tensor, valid: Tensor) -> None:
        """Add ΣF², ΣFO, ΣO² over valid pixels; ``forecast_events(τ)`` gives (B, T, H, W) values in [0, 1]."""
        for index, threshold in enumerate(self.thresholds):
            forecast, observed = forecast_events(threshold), (target >= threshold) & valid
            for position, scale in enumerate(self.scales):
                f = neighbourhood_fractions(forecast, scale) * valid
                o = neighbourhood_fractions(observed, scale) * valid
                self.forecast_square_sum[index, position] += f.square().sum(dim=(0, 2, 3))
                self.product_sum[index, position] += (f * o).sum(dim=(0, 2, 3))
                self.observed_square_sum[index, position] += o.square().sum(dim=(0, 2, 3))

    def compute(self) -> dict[str, Tensor]:
        """Return the keys listed in the class docstring, float32 scalars, NaN where undefined."""
        per_lead, aggregated = fss_from_sums(self.forecast_square_sum, self.product_sum, self.observed_square_sum)
        scores: dict[str, Tensor] = {}
        for index, threshold in enumerate(self.thresholds):
            for position, scale in enumerate(self.scales):
                key = f"{self.name}@{threshold_label(threshold)}{self.unit}/s{scale}"
                scores |= lead_time_scores(key, per_lead[index, position], aggregated[index, position])
        warn_if_undefined(scores, type(self).__name__, "no event in either field")
        return scores


class EnsembleFSS(FractionsSkillScore):
    """FSS of the ensemble exceedance probability (update with members (B, N, T, H, W)); keys ``fss_ens@…``.

    Args:
        thresholds: event thresholds τ, evaluation value space.
        members: N, ensemble size in every update (≥ 2).
        scales, lead_times, unit, require_mask, kwargs: as :class:`FractionsSkillScore`.
    """

    name = "fss_ens"
    takes_members = True

    def __init__(self, thresholds: Sequence[float], *, members: int, **kwargs) -> None:
        super().__init__(thresholds, **kwargs)
        self.members = ensemble_size(members)

    def update(self, members: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate the fraction sums; shapes and units as in :func:`as_ensemble`."""
        members, target, valid = as_ensemble(
            members, target, mask, lead_times=self.lead_times, require_mask=self.require_mask
        )
        check_members(members, self.members, type(self).__name__)
        self._accumulate(lambda threshold: (members >= threshold).to(torch.float64).mean(dim=1) * valid,
                         target, valid)
