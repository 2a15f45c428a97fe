"""Scores of the ensemble distribution at each pixel: CRPS, rank histogram and spread-skill ratio.

Inputs of every ``update(members, target, mask=None)``: members (B, N, T, H, W) or (B, N, T, 1, H, W), target
(B, T, H, W) or (B, T, 1, H, W), evaluation value space (see :func:`nowcast_pl.metrics.inputs.as_ensemble`).
States are sums with ``dist_reduce_fx="sum"``, exact under DDP (integer counts; float64 sums).
"""

import torch
from torch import Tensor
from torchmetrics import Metric

from nowcast_pl.metrics.inputs import as_ensemble, lead_time_scores, positive_int, warn_if_undefined


def ensemble_size(members: int) -> int:
    """Return ``members`` if it is an int ≥ 2 (ensemble scores need a spread), else raise ValueError."""
    if positive_int(members, "members") < 2:
        raise ValueError(f"ensemble scores need members >= 2, got {members}")
    return members


def check_members(forecast: Tensor, members: int, owner: str) -> None:
    """Raise ValueError if dim 1 of (B, N, T, H, W) ``forecast`` is not the metric's ``members``."""
    if forecast.shape[1] != members:
        raise ValueError(f"{owner} was built for members={members}, got {forecast.shape[1]} on dim 1")


def mean_pairwise_distance(members: Tensor) -> Tensor:
    """(1/N²) Σ_ij |x_i − x_j| over dim 1 of (B, N, ...), in O(N log N) from the sorted members.

    With x_(1) ≤ … ≤ x_(N): Σ_ij |x_i − x_j| = 2 Σ_k (2k − N − 1) x_(k).
    """
    count = members.shape[1]
    ordered = members.sort(dim=1).values
    weights = 2 * torch.arange(1, count + 1, device=members.device, dtype=members.dtype) - count - 1
    weights = weights.view(1, count, *([1] * (members.ndim - 2)))
    return 2 * (weights * ordered).sum(dim=1) / count**2


def crps_from_sums(absolute_error_sum: Tensor, pairwise_distance_sum: Tensor, pixel_count: Tensor, *,
                   fair_factor: float = 1.0) -> Tensor:
    """Mean CRPS over the counted pixels (:class:`EnsembleCRPS`), elementwise over any shape (lead times, ...).

    Args:
        absolute_error_sum: Σ over pixels of (1/N) Σ_i |x_i − y|, float64.
        pairwise_distance_sum: Σ over pixels of (1/N²) Σ_ij |x_i − x_j|, float64.
        pixel_count: pixels counted (NaN result where 0).
        fair_factor: 1 for the standard CRPS, N/(N − 1) for the fair CRPS.
    """
    count = pixel_count.to(torch.float64)
    absolute, pairwise = absolute_error_sum / count, pairwise_distance_sum / count
    return absolute - fair_factor * pairwise / 2


def spread_skill_from_sums(variance_sum: Tensor, squared_error_sum: Tensor, pixel_count: Tensor, *,
                           members: int) -> Tensor:
    """Spread-skill ratio sqrt((N+1)/N) · spread / RMSE of the member mean (:class:`SpreadSkillRatio`),
    elementwise over any shape (lead times, ...).

    Args:
        variance_sum: Σ over pixels of the unbiased member variance, float64.
        squared_error_sum: Σ over pixels of the squared error of the member mean, float64.
        pixel_count: pixels counted (NaN result where 0).
        members: N, the ensemble size.
    """
    count = pixel_count.to(torch.float64)
    spread, skill = (variance_sum / count).sqrt(), (squared_error_sum / count).sqrt()
    return ((members + 1) / members) ** 0.5 * spread / skill


class _PerLeadEnsembleSums(Metric):
    """Base of the ensemble metrics that keep float64 sums per lead time (``sum_states``) and a pixel count.

    Subclasses set ``sum_states`` and, in ``update``, add to them the per-pixel terms of the ensemble that
    :meth:`_ensemble` returns, then call :meth:`_count`.
    """

    is_differentiable = False
    full_state_update = False
    takes_members = True
    sum_states: tuple[str, ...] = ()

    def __init__(self, *, members: int, lead_times: int, require_mask: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.members = ensemble_size(members)
        self.lead_times = positive_int(lead_times, "lead_times")
        self.require_mask = require_mask
        for state in self.sum_states:
            self.add_state(state, torch.zeros(lead_times, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pixel_count", torch.zeros(lead_times, dtype=torch.int64), dist_reduce_fx="sum")

    def _ensemble(self, members: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Checked (members, target, valid) as :func:`as_ensemble` returns them."""
        members, target, valid = as_ensemble(
            members, target, mask, lead_times=self.lead_times, require_mask=self.require_mask
        )
        check_members(members, self.members, type(self).__name__)
        return members, target, valid

    def _count(self, valid: Tensor) -> None:
        self.pixel_count += valid.sum(dim=(0, 2, 3))


class EnsembleCRPS(_PerLeadEnsembleSums):
    """Continuous ranked probability score of the ensemble's empirical CDF, standard and fair forms.

    Per pixel, with members x_1..x_N and observation y (Gneiting & Raftery 2007, eq. 21; Ferro 2014, eq. 3):
    standard ``crps`` = (1/N) Σ|x_i − y| − 1/(2N²) Σ_ij |x_i − y_j|, the CRPS of the empirical CDF, equal to
    pysteps' ``probscores.CRPS`` (Hersbach 2000) and properscoring's ``crps_ensemble``;
    ``crps_fair`` = (1/N) Σ|x_i − y| − 1/(2N(N−1)) Σ_ij |x_i − x_j|, unbiased for the CRPS of the distribution
    the members are drawn from (fair to small ensembles). ``name/lead_t`` averages the valid pixels at lead
    time t over the test set; ``name`` is the mean over lead times. Units are those of the evaluation space.

    Args:
        members: N, ensemble size in every update (≥ 2).
        lead_times: T, number of lead times in every update.
        require_mask: raise in :meth:`update` if no mask is given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    higher_is_better = False
    sum_states = ("absolute_error_sum", "pairwise_distance_sum")

    def update(self, members: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate per-pixel terms; shapes and units as in :func:`as_ensemble`."""
        members, target, valid = self._ensemble(members, target, mask)
        absolute_error = (members - target[:, None]).abs().mean(dim=1)
        pairwise = mean_pairwise_distance(members)
        self.absolute_error_sum += absolute_error.sum(dim=(0, 2, 3), dtype=torch.float64)
        self.pairwise_distance_sum += pairwise.sum(dim=(0, 2, 3), dtype=torch.float64)
        self._count(valid)

    def compute(self) -> dict[str, Tensor]:
        """Return ``crps``, ``crps/lead_01`` ..., ``crps_fair``, ``crps_fair/lead_01`` ... (NaN: no pixel)."""
        sums = (self.absolute_error_sum, self.pairwise_distance_sum, self.pixel_count)
        scores = lead_time_scores("crps", crps_from_sums(*sums))
        scores |= lead_time_scores("crps_fair", crps_from_sums(*sums, fair_factor=self.members / (self.members - 1)))
        warn_if_undefined(scores, type(self).__name__, "no valid pixel at that lead time")
        return scores


class RankHistogram(Metric):
    """Talagrand rank histogram: how often the observation falls below 0, 1, …, N of the members.

    Follows pysteps ``ensscores.rankhist`` (Hamill 2001): with ``min_value`` set, pixels where the observation
    and every member are below it are skipped and values below it are set to ``min_value − 1``. A pixel
    whose observation ties with e members (ranks b … b+e possible) adds 1/(e+1) to each of those ranks, the
    expectation of pysteps' random tie-breaking, so results are deterministic. The state counts pixels per
    (lead time, members below, members tied), int64.

    Keys of :meth:`compute`: ``rank_hist/bin_00`` … ``rank_hist/bin_{N:02d}``, the relative frequency of each
    rank over all lead times (sums to 1), and ``rank_hist/count``, the number of pixels counted.

    Args:
        members: N, ensemble size in every update (≥ 2).
        lead_times: T, number of lead times in every update.
        min_value: pysteps' ``X_min``, evaluation value space; None keeps every valid pixel.
        require_mask: raise in :meth:`update` if no mask is given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False
    takes_members = True

    def __init__(
        self, *, members: int, lead_times: int, min_value: float | None = None, require_mask: bool = False, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.members = ensemble_size(members)
        self.lead_times = positive_int(lead_times, "lead_times")
        self.min_value = None if min_value is None else float(min_value)
        self.require_mask = require_mask
        shape = (lead_times, members + 1, members + 1)
        self.add_state("rank_tie_counts", torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, members: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Count (rank, ties) per valid pixel; shapes and units as in :func:`as_ensemble`."""
        members, target, valid = as_ensemble(
            members, target, mask, lead_times=self.lead_times, require_mask=self.require_mask
        )
        check_members(members, self.members, type(self).__name__)
        if self.min_value is not None:
            floor = self.min_value
            valid = valid & ((target >= floor) | (members >= floor).any(dim=1))
            members = torch.where(members < floor, floor - 1, members)
            target = torch.where(target < floor, floor - 1, target)
        below = (members < target[:, None]).sum(dim=1)
        tied = (members == target[:, None]).sum(dim=1)
        side = self.members + 1
        lead = torch.arange(self.lead_times, device=below.device).view(1, -1, 1, 1)
        cell = ((lead * side + below) * side + tied)[valid]
        counts = torch.bincount(cell, minlength=self.lead_times * side * side)
        self.rank_tie_counts += counts.view(self.lead_times, side, side)

    def compute(self) -> dict[str, Tensor]:
        """Return ``rank_hist/bin_XX`` frequencies and ``rank_hist/count`` (NaN frequencies if nothing counted)."""
        histogram = rank_frequencies(self.rank_tie_counts.sum(dim=0))
        total = self.rank_tie_counts.sum()
        scores = {f"rank_hist/bin_{rank:02d}": value for rank, value in enumerate(histogram / total)}
        scores = {key: value.to(torch.float32) for key, value in scores.items()}
        scores["rank_hist/count"] = total.to(torch.float32)
        warn_if_undefined(scores, type(self).__name__, "no pixel counted")
        return scores


def rank_frequencies(rank_tie_counts: Tensor) -> Tensor:
    """(N+1,) float64 rank counts from (N+1, N+1) counts of (members below, members tied), ties split evenly."""
    side = rank_tie_counts.shape[0]
    below = torch.arange(side, device=rank_tie_counts.device).view(side, 1, 1)
    tied = torch.arange(side, device=rank_tie_counts.device).view(1, side, 1)
    rank = torch.arange(side, device=rank_tie_counts.device).view(1, 1, side)
    share = ((below <= rank) & (rank <= below + tied)).to(torch.float64) / (tied + 1)
    return torch.einsum("be,ber->r", rank_tie_counts.to(torch.float64), share)


class SpreadSkillRatio(_PerLeadEnsembleSums):
    """Ensemble spread against the error of the ensemble mean (Fortin et al. 2014, eq. 5).

    Per lead time t, over valid pixels of the test set: ``spread`` = sqrt(mean of the unbiased member
    variance), ``rmse_ens_mean`` = RMSE of the member mean, and ``spread_skill`` = sqrt((N+1)/N) · spread /
    rmse_ens_mean, which is 1 in expectation for a statistically consistent ensemble (> 1 over-, < 1
    under-dispersive). The aggregated keys use the sums over all lead times (no per-lead averaging).

    Args:
        members: N, ensemble size in every update (≥ 2).
        lead_times: T, number of lead times in every update.
        require_mask: raise in :meth:`update` if no mask is given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    higher_is_better = None
    sum_states = ("variance_sum", "squared_error_sum")

    def update(self, members: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate member variance and ensemble-mean error; shapes and units as in :func:`as_ensemble`."""
        members, target, valid = self._ensemble(members, target, mask)
        self.variance_sum += members.var(dim=1).sum(dim=(0, 2, 3), dtype=torch.float64)
        self.squared_error_sum += (members.mean(dim=1) - target).square().sum(dim=(0, 2, 3), dtype=torch.float64)
        self._count(valid)

    def compute(self) -> dict[str, Tensor]:
        """Return ``spread_skill``, ``spread``, ``rmse_ens_mean``, each also per lead time (NaN: no pixel)."""
        count = self.pixel_count.to(torch.float64)
        spread = (self.variance_sum / count).sqrt()
        skill = (self.squared_error_sum / count).sqrt()
        total_spread = (self.variance_sum.sum() / count.sum()).sqrt()
        total_skill = (self.squared_error_sum.sum() / count.sum()).sqrt()
        ratio = spread_skill_from_sums(self.variance_sum, self.squared_error_sum, count, members=self.members)
        total_ratio = spread_skill_from_sums(self.variance_sum.sum(), self.squared_error_sum.sum(), count.sum(),
                                             members=self.members)
        scores = lead_time_scores("spread_skill", ratio, total_ratio)
        scores |= lead_time_scores("spread", spread, total_spread)
        scores |= lead_time_scores("rmse_ens_mean", skill, total_skill)
        warn_if_undefined(scores, type(self).__name__, "no valid pixel at that lead time, or a perfect mean")
        return scores
