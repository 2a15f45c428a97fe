"""The input contract shared by every metric, and the ``name/lead_XX`` key format.

Every metric in :mod:`nowcast_pl.metrics` takes ``update(preds, target, mask=None)`` with fields that are
already in the evaluation value space (dBZ, 0-255 VIL units, the paper's pixel scale, ...).
"""

from collections.abc import Mapping

import torch
from torch import Tensor
from torchmetrics.utilities import rank_zero_warn


def as_frames(
    preds: Tensor, target: Tensor, mask: Tensor | None, *, lead_times: int, require_mask: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate metric inputs and bring them to (B, T, H, W) at the evaluation precision, with a validity mask.

    Args:
        preds: forecast, (B, T, H, W) or (B, T, 1, H, W), any float dtype, evaluation value space.
        target: observation, same shape as ``preds``.
        mask: optional bool, True = pixel counts; (H, W), (B, T, H, W), (B, T, 1, H, W) or any shape that
            broadcasts to (B, T, H, W).
        lead_times: expected T.
        require_mask: raise when ``mask`` is None (protocols such as HKO-7 that are defined on masked pixels).

    Returns:
        ``(preds, target, valid)``: valid as (B, T, H, W) bool, True where ``mask`` holds and both values are
        finite; preds and target as (B, T, H, W) in :func:`evaluation_dtype` (float64 if either input is
        float64, else float32), set to 0 wherever ``valid`` is False (so missing-data codes and NaN never reach
        a filter).

    Raises:
        ValueError: if a shape is wrong, T differs from ``lead_times``, or a required mask is missing.
        TypeError: if ``mask`` is not a bool tensor.
    """
    preds = _squeeze_channel(preds, "preds")
    target = _squeeze_channel(target, "target")
    if preds.shape != target.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must have one shape")
    if preds.shape[1] != lead_times:
        raise ValueError(f"expected lead_times={lead_times} frames on dim 1, got {tuple(preds.shape)}")
    dtype = evaluation_dtype(preds, target)
    preds, target = preds.to(dtype), target.to(dtype)
    valid = _valid_pixels(torch.isfinite(preds) & torch.isfinite(target), mask, require_mask)
    zero = preds.new_zeros(())
    return torch.where(valid, preds, zero), torch.where(valid, target, zero), valid


def as_ensemble(
    members: Tensor, target: Tensor, mask: Tensor | None, *, lead_times: int, require_mask: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Validate ensemble metric inputs and bring them to (B, N, T, H, W) and (B, T, H, W) with a validity mask.

    Args:
        members: ensemble forecast, (B, N, T, H, W) or (B, N, T, 1, H, W) with N ≥ 1 members, any float
            dtype, evaluation value space.
        target: observation, (B, T, H, W) or (B, T, 1, H, W).
        mask: optional bool mask as in :func:`as_frames` (broadcasts to (B, T, H, W)).
        lead_times: expected T.
        require_mask: raise when ``mask`` is None.

    Returns:
        ``(members, target, valid)``: valid as (B, T, H, W) bool, True where ``mask`` holds and the
        observation and every member are finite; members (B, N, T, H, W) and target (B, T, H, W) in
        :func:`evaluation_dtype`, set to 0 wherever ``valid`` is False.

    Raises:
        ValueError: if a shape is wrong, T differs from ``lead_times``, or a required mask is missing.
        TypeError: if ``mask`` is not a bool tensor.
    """
    if members.ndim == 6 and members.shape[3] == 1:
        members = members.squeeze(3)
    if members.ndim != 5:
        shape = tuple(members.shape)
        raise ValueError(f"ensemble forecasts must be (B, N, T, H, W) or (B, N, T, 1, H, W), got {shape}")
    target = _squeeze_channel(target, "target")
    if members.shape[:1] + members.shape[2:] != target.shape:
        raise ValueError(f"members {tuple(members.shape)} and target {tuple(target.shape)} differ outside dim 1")
    if target.shape[1] != lead_times:
        raise ValueError(f"expected lead_times={lead_times} frames, got target {tuple(target.shape)}")
    dtype = evaluation_dtype(members, target)
    members, target = members.to(dtype), target.to(dtype)
    finite = torch.isfinite(members).all(dim=1) & torch.isfinite(target)
    valid = _valid_pixels(finite, mask, require_mask)
    zero = target.new_zeros(())
    return torch.where(valid[:, None], members, zero), torch.where(valid, target, zero), valid


def evaluation_dtype(*fields: Tensor) -> torch.dtype:
    """float64 if any field is float64, else float32: scores keep the precision of float64 inputs.

    Thresholding in float32 would move quantised values that sit exactly at a threshold (e.g. 0.3 mm stored as
    6 × 0.05) to the other side of a ``>`` or ``>=`` test; bf16/fp16 model outputs are scored in float32.
    """
    return torch.float64 if any(field.dtype == torch.float64 for field in fields) else torch.float32


def _valid_pixels(finite: Tensor, mask: Tensor | None, require_mask: bool) -> Tensor:
    if mask is None and require_mask:
        raise ValueError("this metric's protocol is defined on masked pixels; pass mask=...")
    if mask is not None:
        finite = finite & _broadcast_mask(mask, finite.shape).to(finite.device)
    return finite


def _squeeze_channel(frames: Tensor, name: str) -> Tensor:
    if frames.ndim == 5 and frames.shape[2] == 1:
        return frames.squeeze(2)
    if frames.ndim != 4:
        raise ValueError(f"{name} must be (B, T, H, W) or (B, T, 1, H, W), got {tuple(frames.shape)}")
    return frames


def _broadcast_mask(mask: Tensor, shape: torch.Size) -> Tensor:
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = pixel counts), got dtype {mask.dtype}")
    if mask.ndim == 5:
        mask = _squeeze_channel(mask, "mask")
    try:
        return torch.broadcast_to(mask, shape)
    except RuntimeError as error:
        raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to frames {tuple(shape)}") from error


def lead_time_scores(name: str, per_lead: Tensor, aggregate: Tensor | None = None) -> dict[str, Tensor]:
    """Key a per-lead-time score as ``name`` plus ``name/lead_01`` ... (1-based, two digits at least).

    Args:
        name: key of the aggregated score, e.g. ``"mse"`` or ``"csi@20dBZ"``.
        per_lead: (T,) score per lead time.
        aggregate: scalar for ``name``; default the mean over lead times (NaN if any lead time is NaN).

    Returns:
        ``{name: aggregate, f"{name}/lead_{t:02d}": per_lead[t - 1]}`` as float32 scalars.
    """
    scores = {name: (per_lead.mean() if aggregate is None else aggregate).to(torch.float32)}
    for index, value in enumerate(per_lead.to(torch.float32), start=1):
        scores[f"{name}/lead_{index:02d}"] = value
    return scores


def warn_if_undefined(scores: Mapping[str, Tensor], owner: str, reason: str) -> None:
    """Warn (rank zero) once per call, naming every key whose value is NaN.

    Args:
        scores: computed scalars.
        owner: metric class name for the message.
        reason: why a value can be undefined, e.g. "no valid pixel".
    """
    undefined = [key for key, value in scores.items() if torch.isnan(value)]
    if undefined:
        shown = ", ".join(undefined[:8]) + (f" (+{len(undefined) - 8} more)" if len(undefined) > 8 else "")
        rank_zero_warn(f"{owner}: {len(undefined)} value(s) undefined ({reason}), reported as NaN: {shown}")


def positive_int(value: int, name: str) -> int:
    """Return ``value`` if it is a positive int, else raise ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def lead_key(score: str, lead: int | None) -> str:
    """Key of a threshold-free score (``crps``, ``mae``), overall or at a lead index."""
    return score if lead is None else f"{score}/lead_{lead:02d}"


def curve_points(scores: Mapping[str, object], prefix: str) -> tuple[list[float], list[float]]:
    """A curve spread over scalar keys ``f"{prefix}/bin_XX"`` or ``f"{prefix}/p_X"``, back as (x, y) lists.

    Args:
        scores: flat scores, e.g. ``flatten_scores(metrics.compute())`` or a loaded ``test_metrics.json``.
        prefix: e.g. ``"rel_observed@20dBZ"``, ``"roc_pod@20dBZ"``, ``"rank_hist"``.

    Returns:
        ``(positions, values)`` sorted by position: the bin index or rank for ``bin_XX``, the probability
        threshold for ``p_X``; values as floats. Empty lists when no key matches.
    """
    points = []
    for key, value in scores.items():
        label = key[len(prefix) + 1 :] if key.startswith(f"{prefix}/") else ""
        kind, _, position = label.partition("_")
        if kind in ("bin", "p") and position and "/" not in position:
            points.append((float(position), float(value)))
    points.sort()
    return [x for x, _ in points], [y for _, y in points]
