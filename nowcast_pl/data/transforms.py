"""Frame transforms applied by the data module: physical values → [0, 1], and resizing to the model grid.

Resizing changes scores (datasets.md §7.1 item 4), so the method is explicit: the papers resize with
bilinear interpolation *without* antialiasing (torchvision 0.13 tensors, ``F.interpolate``), SEVIR-LR uses
a block maximum. The method is part of the data configuration and therefore of every saved run config.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

ResizeMethod = Literal["bilinear", "bicubic", "nearest", "area", "max", "pad"]
RESIZE_METHODS: tuple[str, ...] = ("bilinear", "bicubic", "nearest", "area", "max", "pad")


def scale_to_unit(physical: np.ndarray, value_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Map physical values linearly to [0, 1] and flag unusable pixels.

    Args:
        physical: float array in the store's units, NaN where missing.
        value_range: (lo, hi) physical values mapped to 0 and 1; values outside are clipped.

    Returns:
        values: float32 array in [0, 1], 0 where missing.
        valid: bool array, False where missing.
    """
    lo, hi = value_range
    valid = np.isfinite(physical)
    scaled = (np.where(valid, physical, lo) - lo) / (hi - lo)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32), valid


def unit_to_physical(values, value_range: tuple[float, float]):
    """Inverse of :func:`scale_to_unit` for values in [0, 1]: ``lo + values * (hi - lo)``.

    Args:
        values: NumPy array or tensor in [0, 1] (any shape).
        value_range: (lo, hi) physical values of 0 and 1.

    Returns:
        The same type and shape, in physical units.
    """
    lo, hi = value_range
    return values * (hi - lo) + lo


def resize_frames(
    frames: torch.Tensor,
    size: tuple[int, int],
    *,
    method: ResizeMethod = "bilinear",
    antialias: bool = False,
) -> torch.Tensor:
    """Resize frames to ``size``.

    Args:
        frames: (T, C, H, W) float tensor.
        size: target (h, w).
        method: interpolation (``align_corners=False``), ``"area"`` averaging, ``"max"`` block maximum
            (requires H, W to be integer multiples of h, w), or ``"pad"``: zero-padding centred as
            torchvision's ``CenterCrop`` does for a larger size (requires h >= H, w >= W).
        antialias: low-pass before downsampling (bilinear/bicubic only).

    Returns:
        (T, C, h, w) float tensor.

    Raises:
        ValueError: on an unknown method or a non-integer block factor for ``"max"``.
    """
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    if method == "pad":
        return _centre_pad(frames, size)
    if method == "max":
        fh, fw = frames.shape[-2] // size[0], frames.shape[-1] // size[1]
        if (fh * size[0], fw * size[1]) != tuple(frames.shape[-2:]):
            raise ValueError(f"resize_method='max' needs integer factors, got {tuple(frames.shape[-2:])}→{size}")
        return F.max_pool2d(frames, kernel_size=(fh, fw))
    if method in ("bilinear", "bicubic"):
        return F.interpolate(frames, size=size, mode=method, align_corners=False, antialias=antialias)
    if method in ("nearest", "area"):
        return F.interpolate(frames, size=size, mode=method)
    raise ValueError(f"resize_method={method!r} is not one of {RESIZE_METHODS}")


def resize_mask(mask: torch.Tensor, size: tuple[int, int], *, method: ResizeMethod) -> torch.Tensor:
    """Resize a validity mask: a target pixel is valid only if every source pixel it draws on is valid.

    Args:
        mask: (T, C, H, W) bool tensor.
        size: target (h, w).
        method: the frames' resize method (``"nearest"`` keeps nearest; others use the footprint).

    Returns:
        (T, C, h, w) bool tensor.
    """
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    if method == "pad":
        return _centre_pad(mask, size)
    if method == "nearest":
        return F.interpolate(mask.float(), size=size, mode="nearest") > 0.5
    invalid = (~mask).float()
    if method == "max":
        return resize_frames(invalid, size, method="max") == 0
    # Max-pooling the invalid flags over each output pixel's footprint before interpolating makes any
    # invalid contributor mark the output invalid.
    spread = F.adaptive_max_pool2d(invalid, size)
    return spread == 0


def _centre_pad(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero(False)-pad (..., H, W) to ``size``, the extra row/column going to the bottom/right."""
    extra_h, extra_w = size[0] - frames.shape[-2], size[1] - frames.shape[-1]
    if extra_h < 0 or extra_w < 0:
        raise ValueError(f"resize_method='pad' cannot shrink {tuple(frames.shape[-2:])} to {size}")
    top, left = extra_h // 2, extra_w // 2
    return F.pad(frames, (left, extra_w - left, top, extra_h - top))
