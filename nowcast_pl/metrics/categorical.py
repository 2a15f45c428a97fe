"""Categorical (threshold-exceedance) scores: CSI, POD, FAR and HSS, optionally on max-pooled fields.

With H = hits, M = misses, F = false alarms and R = correct negatives:
CSI = H/(H+M+F), POD = H/(H+M), FAR = F/(H+F), HSS = 2(HR - FM)/[(H+M)(M+R) + (H+F)(F+R)].
A score whose denominator is 0 (CSI or POD without an observed event, FAR without a forecast event, HSS
when every counted pixel is an event in both fields or in neither) is undefined: it is reported
as NaN, the NaN propagates into the means over lead times and thresholds, and a warning names the keys.
"""

import math
from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from nowcast_pl.metrics.inputs import as_frames, lead_time_scores, positive_int, warn_if_undefined

Comparison = Literal[">=", ">"]
Aggregation = Literal["per_lead", "global"]
PoolPadding = Literal["none", "diffcast"]
Quantize = Literal["none", "floor"]
Score = Literal["csi", "pod", "far", "hss"]
SCORES: tuple[Score, ...] = get_args(Score)


def threshold_label(threshold: float) -> str:
    """Format a threshold for metric keys: 20.0 -> "20", 0.5 -> "0.5", 17.6 -> "17.6"."""
    value = float(threshold)
    return str(int(value)) if value.is_integer() else repr(value)


def score_key(score: str, threshold: float, unit: str, *, lead: int | None = None, fss_scale: int = 4) -> str:
    """Metric key of a thresholded score, e.g. ``csi@20dBZ/lead_03`` or ``fss@20dBZ/s4``."""
    key = f"{score}@{threshold_label(threshold)}{unit}" + (f"/s{fss_scale}" if score == "fss" else "")
    return key if lead is None else f"{key}/lead_{lead:02d}"


def pool_tag(kernel: int, stride: int) -> str:
    """Key tag of a pooled variant: "" without pooling, else e.g. "_pool4_s1" (csi_pool4_s1@20dBZ)."""
    return "" if kernel == stride == 1 else f"_pool{kernel}_s{stride}"


def max_pool_frames(
    values: Tensor, valid: Tensor, *, kernel: int, stride: int, padding: PoolPadding = "none"
) -> tuple[Tensor, Tensor]:
    """Max-pool every (H, W) frame, ignoring invalid pixels.

    Invalid pixels are set to -inf before pooling; a pooled cell is valid if any of its pixels is valid.
    ``padding="none"`` drops trailing rows/columns that do not fill a window (like ``nn.MaxPool2d``);
    ``"diffcast"`` first appends ``kernel - H % kernel`` rows and ``kernel - W % kernel`` columns of valid
    zeros at the bottom/right (a whole extra block when H is divisible), as DiffCast does.

    Args:
        values: (..., H, W) float, evaluation value space.
        valid: (..., H, W) bool, True = pixel counts.
        kernel: pooling window side, in pixels.
        stride: step between windows, in pixels.
        padding: "none" or "diffcast".

    Returns:
        ``(pooled_values, pooled_valid)``, each (..., H', W').

    Raises:
        ValueError: if a frame (after padding) is smaller than ``kernel``.
    """
    *leading, height, width = values.shape
    values = values.masked_fill(~valid, float("-inf"))
    cover = valid.to(values.dtype)
    if padding == "diffcast":
        pad = (0, kernel - width % kernel, 0, kernel - height % kernel)
        values, cover = F.pad(values, pad, value=0.0), F.pad(cover, pad, value=1.0)
    if min(values.shape[-2:]) < kernel:
        raise ValueError(f"pooling kernel {kernel} exceeds the frame {tuple(values.shape[-2:])}")
    stacked = torch.stack([values, cover]).flatten(0, -3)[:, None]
    pooled = F.max_pool2d(stacked, kernel_size=kernel, stride=stride)
    pooled = pooled.view(2, *leading, *pooled.shape[-2:])
    return pooled[0], pooled[1] > 0


def contingency_scores(
    hits: Tensor, misses: Tensor, false_alarms: Tensor, correct_negatives: Tensor
) -> dict[Score, Tensor]:
    """Elementwise CSI, POD, FAR and HSS of float64 count tensors of one shape (NaN where 0/0)."""
    h, m, f, r = hits, misses, false_alarms, correct_negatives
    return {
        "csi": h / (h + m + f),
        "pod": h / (h + m),
        "far": f / (h + f),
        "hss": 2 * (h * r - f * m) / ((h + m) * (m + r) + (h + f) * (f + r)),
    }


def aggregated_scores(
    counts: Sequence[Tensor], aggregation: Aggregation
) -> tuple[dict[Score, Tensor], dict[Score, Tensor]]:
    """CSI, POD, FAR and HSS per lead time and aggregated over lead times (see :class:`CategoricalScores`).

    Args:
        counts: float64 H, M, F, R, each (..., T): leading axes (thresholds, bootstrap resamples) are kept.
        aggregation: ``"per_lead"`` (mean of the per-lead scores) or ``"global"`` (scores of the counts summed
            over lead times).

    Returns:
        ``(per_lead, aggregated)``: score → (..., T) and score → (...), NaN where 0/0.
    """
    per_lead = contingency_scores(*counts)
    if aggregation == "global":
        return per_lead, contingency_scores(*(c.sum(dim=-1) for c in counts))
    return per_lead, {score: values.mean(dim=-1) for score, values in per_lead.items()}


class CategoricalScores(Metric):
    """Contingency counts per threshold and lead time, and the CSI/POD/FAR/HSS derived from them.

    Per update and threshold τ: optional floor quantization, optional max-pooling of each frame
    (:func:`max_pool_frames`; pooling values then thresholding equals thresholding then pooling), then
    event = value ``comparison`` τ in both fields, counted over valid (pooled) pixels.

    Aggregation over the test set:
        - ``"per_lead"``: the score at each lead time from counts summed over all samples at that lead
          time, then the mean over lead times (DiffCast, RainDiff, HKO-7, SEVIR challenge).
        - ``"global"``: one score from counts summed over samples, lead times and pixels (STLDM,
          Earthformer mode "0", DiffCast's pooled CSI).

    Keys of :meth:`compute` (``tag`` = :func:`pool_tag` unless given, ``label`` = :func:`threshold_label`):
        ``f"{score}{tag}@{label}{unit}"`` aggregated, ``f"{score}{tag}@{label}{unit}/lead_{t:02d}"`` per lead
        time (t from 1), and ``f"{score}{tag}_m"`` the mean over thresholds, e.g. ``csi@20dBZ``,
        ``hss@30dBZ/lead_03``, ``csi_m``, ``csi_pool4_s4@20dBZ``.

    Args:
        thresholds: event thresholds τ, evaluation value space.
        lead_times: T, number of lead times in every update.
        comparison: ``">="`` (papers, default) or ``">"`` (pysteps ``det_cat_fct``).
        aggregation: ``"per_lead"`` or ``"global"``, see above.
        pool_kernel: max-pooling window side in pixels; 1 = no pooling.
        pool_stride: pooling step; None = ``pool_kernel`` (non-overlapping).
        pool_padding: ``"none"`` or ``"diffcast"``, see :func:`max_pool_frames`.
        quantize: ``"floor"`` reproduces DiffCast's integer truncation: values are clipped at 0, then floored.
            With integer thresholds and ``">="`` it never changes an event (x ≥ n ⇔ ⌊x⌋ ≥ n); with ``">"`` or
            fractional thresholds it does (20.7 > 20 but ⌊20.7⌋ = 20 is not). DiffCast's upper clip at the
            pixel scale is not applied.
        scores: which of csi, pod, far, hss to report.
        unit: appended to threshold labels in keys, e.g. "dBZ".
        tag: key tag after the score name; None = :func:`pool_tag` of kernel and stride.
        require_mask: raise in :meth:`update` if no mask is given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: if an argument is outside the accepted values (the message lists them).
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        thresholds: Sequence[float],
        *,
        lead_times: int,
        comparison: Comparison = ">=",
        aggregation: Aggregation = "per_lead",
        pool_kernel: int = 1,
        pool_stride: int | None = None,
        pool_padding: PoolPadding = "none",
        quantize: Quantize = "none",
        scores: Sequence[Score] = SCORES,
        unit: str = "",
        tag: str | None = None,
        require_mask: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        for name, value, accepted in (
            ("comparison", comparison, Comparison),
            ("aggregation", aggregation, Aggregation),
            ("pool_padding", pool_padding, PoolPadding),
            ("quantize", quantize, Quantize),
        ):
            _check_choice(name, value, get_args(accepted))
        for score in scores:
            _check_choice("scores", score, SCORES)
        self.thresholds = _check_thresholds(thresholds)
        self.lead_times = positive_int(lead_times, "lead_times")
        self.pool_kernel = positive_int(pool_kernel, "pool_kernel")
        self.pool_stride = positive_int(pool_kernel if pool_stride is None else pool_stride, "pool_stride")
        self.comparison, self.aggregation = comparison, aggregation
        self.pool_padding, self.quantize = pool_padding, quantize
        self.scores, self.unit, self.require_mask = tuple(scores), unit, require_mask
        self.tag = pool_tag(self.pool_kernel, self.pool_stride) if tag is None else tag
        shape = (len(self.thresholds), lead_times)
        for state in ("hits", "misses", "false_alarms", "correct_negatives"):
            self.add_state(state, torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate contingency counts; shapes and units as in :func:`as_frames`."""
        preds, target, valid = as_frames(
            preds, target, mask, lead_times=self.lead_times, require_mask=self.require_mask
        )
        fields = torch.stack([preds, target])
        if self.quantize == "floor":
            fields = fields.clamp(min=0).floor()
        valid = valid.expand_as(fields)
        if self.pool_kernel > 1 or self.pool_stride > 1:
            fields, valid = max_pool_frames(
                fields, valid, kernel=self.pool_kernel, stride=self.pool_stride, padding=self.pool_padding
            )
        counts = torch.stack([self._count_events(fields, valid, threshold) for threshold in self.thresholds])
        self.hits += counts[:, 0]
        self.misses += counts[:, 1]
        self.false_alarms += counts[:, 2]
        self.correct_negatives += counts[:, 3]

    def _count_events(self, fields: Tensor, valid: Tensor, threshold: float) -> Tensor:
        """(4, T) int64 rows H, M, F, R for ``fields`` (2, B, T, H, W) = (forecast, observation)."""
        events = (fields >= threshold if self.comparison == ">=" else fields > threshold) & valid
        forecast, observed = events.sum(dim=(1, 3, 4))
        hits = (events[0] & events[1]).sum(dim=(0, 2, 3))
        valid_count = valid[0].sum(dim=(0, 2, 3))
        return torch.stack([hits, observed - hits, forecast - hits, valid_count - forecast - observed + hits])

    def compute(self) -> dict[str, Tensor]:
        """Return the scores keyed as in the class docstring, float32 scalars, NaN where undefined."""
        states = (self.hits, self.misses, self.false_alarms, self.correct_negatives)
        per_lead, aggregated = aggregated_scores([state.to(torch.float64) for state in states], self.aggregation)
        results: dict[str, Tensor] = {}
        for score in self.scores:
            for index, threshold in enumerate(self.thresholds):
                key = f"{score}{self.tag}@{threshold_label(threshold)}{self.unit}"
                results |= lead_time_scores(key, per_lead[score][index], aggregated[score][index])
            results[f"{score}{self.tag}_m"] = aggregated[score].mean().to(torch.float32)
        warn_if_undefined(
            results,
            type(self).__name__,
            "zero denominator: no forecast or observed event, or for HSS events everywhere",
        )
        return results


def _check_choice(name: str, value: object, accepted: tuple) -> None:
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not one of {list(accepted)}")


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(threshold) for threshold in thresholds)
    labels = [threshold_label(value) for value in values]
    if not values or len(set(labels)) != len(labels) or not all(map(math.isfinite, values)):
        raise ValueError(f"thresholds must be non-empty, finite and distinct, got {list(thresholds)}")
    return values
