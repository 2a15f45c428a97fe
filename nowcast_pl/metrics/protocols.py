"""Named evaluation protocols of the papers, and the metric collection each one implies.

A protocol fixes how scores are counted (event rule, aggregation, quantization, pooled CSI variants) and
which continuous/perceptual metrics are reported. Thresholds, lead times, units and the value range belong
to the dataset and are passed to :func:`build_metrics`. Sources: ``shared/reference/datasets.md`` §7,
``raindiff.md`` §7, ``stldm.md`` §5.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor
from torchmetrics import MetricCollection

from nowcast_pl.metrics.categorical import Aggregation, CategoricalScores, Comparison, PoolPadding, Quantize
from nowcast_pl.metrics.continuous import FrameSSIM, MeanError
from nowcast_pl.metrics.ensemble import EnsembleCRPS, RankHistogram, SpreadSkillRatio
from nowcast_pl.metrics.inputs import positive_int
from nowcast_pl.metrics.perceptual import Backbone, LPIPSNet, LPIPSScore
from nowcast_pl.metrics.probabilistic import ExceedanceProbabilityScores
from nowcast_pl.metrics.spatial import EnsembleFSS, FractionsSkillScore


@dataclass(frozen=True)
class PooledCSI:
    """A max-pooled CSI variant: pooling window, step, padding and aggregation (see CategoricalScores)."""

    kernel: int
    stride: int
    padding: PoolPadding
    aggregation: Aggregation


@dataclass(frozen=True)
class LPIPSSettings:
    """LPIPS trunk and the square side frames are resized to first (None = native resolution)."""

    net: LPIPSNet
    resize_to: int | None = None


@dataclass(frozen=True)
class EnsembleSettings:
    """Scores of an ensemble of N > 1 members, added by :func:`build_metrics` next to the pooled member scores.

    Attributes:
        fss_scales: neighbourhood sides (pixels) of the ensemble FSS (``fss_ens``).
        reliability_bins: probability bins of the reliability diagram.
        probability_thresholds: the ROC's probability thresholds; an int n = ``numpy.linspace(0, 1, n)``.
    """

    fss_scales: tuple[int, ...] = (1, 4, 16)
    reliability_bins: int = 10
    probability_thresholds: int | tuple[float, ...] = 11


@dataclass(frozen=True)
class EvaluationProtocol:
    """How one paper or codebase scores forecasts.

    Attributes:
        name: registry key.
        comparison: event rule, ">=" or ">".
        aggregation: pixel scores "per_lead" (per lead time, then mean) or "global" (one ratio of sums).
        quantize: "floor" = DiffCast's integer truncation before thresholding, else "none".
        pooled: pooled CSI variants reported next to the pixel scores.
        ssim: report :class:`FrameSSIM`.
        lpips: LPIPS settings, or None for no LPIPS.
        requires_mask: the protocol is defined on masked pixels; updates without a mask raise.
        fss_scales: neighbourhood sides (pixels) of a deterministic FSS (``fss``); empty = no FSS.
        ensemble: scores reported when forecasts have N > 1 members (CRPS, rank histogram, Brier, reliability,
            ROC, ensemble FSS, spread-skill), or None to report only the member-pooled deterministic scores.
        source: where the protocol was read.
    """

    name: str
    comparison: Comparison = ">="
    aggregation: Aggregation = "per_lead"
    quantize: Quantize = "none"
    pooled: tuple[PooledCSI, ...] = ()
    ssim: bool = False
    lpips: LPIPSSettings | None = None
    requires_mask: bool = False
    fss_scales: tuple[int, ...] = ()
    ensemble: EnsembleSettings | None = EnsembleSettings()
    source: str = ""


_DIFFCAST_LIKE = {
    "quantize": "floor",
    "pooled": (PooledCSI(4, 4, "diffcast", "global"), PooledCSI(16, 16, "diffcast", "global")),
    "ssim": True,
    "lpips": LPIPSSettings("alex"),
}

PROTOCOLS: Mapping[str, EvaluationProtocol] = {
    protocol.name: protocol
    for protocol in (
        EvaluationProtocol("diffcast", **_DIFFCAST_LIKE, source="DeminYu98/DiffCast utils/metrics.py"),
        EvaluationProtocol("raindiff", **_DIFFCAST_LIKE, source="thaondc-mbzuai/RaindDiff utils/metrics.py"),
        EvaluationProtocol(
            "stldm",
            aggregation="global",
            pooled=(PooledCSI(4, 1, "none", "global"), PooledCSI(16, 4, "none", "global")),
            ssim=True,
            lpips=LPIPSSettings("vgg", resize_to=64),
            source="sqfoo/stldm_official ens_eval.py, utilspp.py",
        ),
        EvaluationProtocol(
            "earthformer", aggregation="global", source="earthformer src/earthformer/metrics/sevir.py, mode 0"
        ),
        EvaluationProtocol("hko7", requires_mask=True, source="sxjscience/HKO-7 nowcasting/hko_evaluation.py"),
        EvaluationProtocol(
            "pysteps",
            comparison=">",
            fss_scales=(1, 4, 16),
            source="pysteps/verification/detcatscores.py, spatialscores.py, probscores.py, ensscores.py",
        ),
    )
}


def resolve_protocol(protocol: str | EvaluationProtocol) -> EvaluationProtocol:
    """Return ``protocol`` itself or the registered protocol of that name.

    Raises:
        ValueError: if the name is not in :data:`PROTOCOLS` (the message lists the valid names).
    """
    if isinstance(protocol, EvaluationProtocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; valid names: {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]


class EvaluationMetrics(MetricCollection):
    """The metrics of a protocol; ``update`` takes one forecast or an ensemble.

    ``update(forecast, target, mask=None)`` with ``forecast`` either (B, T, H, W) / (B, T, 1, H, W), given to
    every deterministic member, or (B, N, T, 1, H, W) members: each deterministic metric is updated once per
    member (scores pooled over members, as STLDM pools its ensemble) and each ensemble metric (class attribute
    ``takes_members``) once with all members. Use ``update``/``compute``/``reset`` (not ``forward``).
    """

    def update(self, forecast: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Update every member; shapes and units as in :func:`nowcast_pl.metrics.inputs.as_ensemble`.

        Raises:
            ValueError: if the collection has ensemble metrics and ``forecast`` has no member axis.
        """
        metrics = list(self.values(copy_state=False))
        ensemble = [metric for metric in metrics if getattr(metric, "takes_members", False)]
        if forecast.ndim != 6:
            if ensemble:
                raise ValueError(
                    f"these metrics score an ensemble of {ensemble[0].members} members: pass forecasts of shape "
                    f"(B, N, T, 1, H, W), got {tuple(forecast.shape)}"
                )
            forecast = forecast[:, None] if forecast.ndim == 5 else forecast[:, None, :, None]
        for metric in metrics:
            if getattr(metric, "takes_members", False):
                metric.update(forecast, target, mask)
            else:
                for member in forecast.unbind(dim=1):
                    metric.update(member, target, mask)


def build_metrics(
    protocol: str | EvaluationProtocol,
    *,
    thresholds: Sequence[float],
    lead_times: int,
    unit: str = "",
    data_range: float,
    members: int = 1,
    lpips_required: bool = False,
    lpips_backbone: Backbone = "pretrained",
) -> EvaluationMetrics:
    """Build the metrics a protocol reports, as one collection with unique, flat keys.

    Members: ``"categorical"`` (csi/pod/far/hss), one ``"categorical_pool{k}_s{s}"`` per pooled variant
    (csi only), ``"error"`` (mse/mae), ``"fss"``, ``"ssim"`` and ``"lpips"`` when the protocol has them; with
    ``members > 1`` and ``protocol.ensemble`` set, also ``"crps"``, ``"rank_histogram"``, ``"probability"``
    (Brier, reliability, ROC), ``"fss_ens"`` and ``"spread_skill"`` (see ``docs/metrics.md``).

    Args:
        protocol: registry name (see :data:`PROTOCOLS`) or a protocol instance.
        thresholds: event thresholds, evaluation value space. The lowest is also the rank histogram's
            ``min_value`` (pysteps ``X_min``).
        lead_times: T, number of lead times in every update.
        unit: appended to threshold labels in keys, e.g. "dBZ" (``csi@20dBZ``).
        data_range: value range of the evaluation space; SSIM's L and LPIPS's value range (0, data_range).
        members: N, forecasts per sample in every update; N > 1 adds the ensemble scores.
        lpips_required: raise instead of warning when the LPIPS weights are not available.
        lpips_backbone: "pretrained", or "random" for wiring tests.

    Returns:
        An :class:`EvaluationMetrics` (``compute_groups=False``, since members with equal states must not be
        merged) whose ``compute()`` is a flat ``dict[str, Tensor]``.

    Raises:
        ValueError: for an unknown protocol name or invalid arguments.
    """
    spec = resolve_protocol(protocol)
    metrics = _deterministic_metrics(spec, thresholds, lead_times, unit, data_range, lpips_required, lpips_backbone)
    if positive_int(members, "members") > 1 and spec.ensemble is not None:
        metrics |= _ensemble_metrics(spec, spec.ensemble, members, thresholds, lead_times, unit)
    return EvaluationMetrics(metrics, compute_groups=False)


def _deterministic_metrics(spec, thresholds, lead_times, unit, data_range, lpips_required, lpips_backbone):
    common = {"thresholds": thresholds, "lead_times": lead_times, "unit": unit}
    categorical = {"comparison": spec.comparison, "quantize": spec.quantize, **common}
    metrics = {
        "categorical": CategoricalScores(aggregation=spec.aggregation, require_mask=spec.requires_mask, **categorical)
    }
    for variant in spec.pooled:
        pooled = CategoricalScores(
            aggregation=variant.aggregation,
            pool_kernel=variant.kernel,
            pool_stride=variant.stride,
            pool_padding=variant.padding,
            scores=("csi",),
            require_mask=spec.requires_mask,
            **categorical,
        )
        metrics[f"categorical{pooled.tag}"] = pooled
    metrics["error"] = MeanError(lead_times=lead_times, require_mask=spec.requires_mask)
    if spec.fss_scales:
        metrics["fss"] = FractionsSkillScore(scales=spec.fss_scales, require_mask=spec.requires_mask, **common)
    if spec.ssim:
        metrics["ssim"] = FrameSSIM(lead_times=lead_times, data_range=data_range)
    if spec.lpips is not None:
        metrics["lpips"] = LPIPSScore(
            lead_times=lead_times,
            value_range=(0.0, data_range),
            net=spec.lpips.net,
            resize_to=spec.lpips.resize_to,
            required=lpips_required,
            backbone=lpips_backbone,
        )
    return metrics


def _ensemble_metrics(spec, settings: EnsembleSettings, members, thresholds, lead_times, unit):
    shared = {"members": members, "lead_times": lead_times, "require_mask": spec.requires_mask}
    by_threshold = {"thresholds": thresholds, "unit": unit, **shared}
    return {
        "crps": EnsembleCRPS(**shared),
        "rank_histogram": RankHistogram(min_value=min(thresholds, default=None), **shared),
        "probability": ExceedanceProbabilityScores(
            reliability_bins=settings.reliability_bins,
            probability_thresholds=settings.probability_thresholds,
            **by_threshold,
        ),
        "fss_ens": EnsembleFSS(scales=settings.fss_scales, **by_threshold),
        "spread_skill": SpreadSkillRatio(**shared),
    }


def flatten_scores(results: Mapping[str, object]) -> dict[str, Tensor | float]:
    """Flatten nested ``compute()`` dicts into one dict, keeping the leaf keys.

    Args:
        results: e.g. ``{"categorical": {"csi@20": ...}, "error": {"mse": ...}}`` or an already flat dict.

    Returns:
        ``{"csi@20": ..., "mse": ...}``.

    Raises:
        ValueError: if two leaves share a key.
    """
    flat: dict[str, Tensor | float] = {}
    for key, value in results.items():
        leaves = flatten_scores(value) if isinstance(value, Mapping) else {key: value}
        for leaf_key, leaf in leaves.items():
            if leaf_key in flat:
                raise ValueError(f"duplicate metric key {leaf_key!r} while flattening")
            flat[leaf_key] = leaf
    return flat
