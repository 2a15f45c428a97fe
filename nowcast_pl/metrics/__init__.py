"""Evaluation metrics as torchmetrics ``Metric``s with sum states (exact under DDP).

Inputs of every ``update(preds, target, mask=None)``: (B, T, H, W) or (B, T, 1, H, W) fields already in
the evaluation value space; ensemble scores take members (B, N, T, 1, H, W) as ``preds``. See
``docs/metrics.md`` for the key formats and the paper protocols.
"""

from nowcast_pl.metrics.categorical import CategoricalScores, max_pool_frames, score_key, threshold_label
from nowcast_pl.metrics.continuous import FrameSSIM, MeanError
from nowcast_pl.metrics.ensemble import EnsembleCRPS, RankHistogram, SpreadSkillRatio
from nowcast_pl.metrics.inputs import curve_points, lead_key
from nowcast_pl.metrics.perceptual import LPIPSScore, backbone_checkpoint_path
from nowcast_pl.metrics.probabilistic import ExceedanceProbabilityScores
from nowcast_pl.metrics.protocols import (
    PROTOCOLS,
    EnsembleSettings,
    EvaluationMetrics,
    EvaluationProtocol,
    LPIPSSettings,
    PooledCSI,
    build_metrics,
    flatten_scores,
    resolve_protocol,
)
from nowcast_pl.metrics.spatial import EnsembleFSS, FractionsSkillScore

__all__ = [
    "PROTOCOLS",
    "CategoricalScores",
    "EnsembleCRPS",
    "EnsembleFSS",
    "EnsembleSettings",
    "EvaluationMetrics",
    "EvaluationProtocol",
    "ExceedanceProbabilityScores",
    "FractionsSkillScore",
    "FrameSSIM",
    "LPIPSScore",
    "LPIPSSettings",
    "MeanError",
    "PooledCSI",
    "RankHistogram",
    "SpreadSkillRatio",
    "backbone_checkpoint_path",
    "build_metrics",
    "curve_points",
    "flatten_scores",
    "lead_key",
    "max_pool_frames",
    "resolve_protocol",
    "score_key",
    "threshold_label",
]
