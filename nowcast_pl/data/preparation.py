"""How a model's training frames were made from its store, applied to new inputs and undone on forecasts.

The data module maps the store's physical values linearly to [0, 1] (``value_range``), resizes the store's
grid to ``frame_size`` (e.g. 128 → 32 pixels by ``area`` averaging: a factor 4), and may cut ``crop_size``
windows out of the result (random crops at the store's native resolution). A checkpoint records this
(:meth:`nowcast_pl.data.RadarDataModule.frame_preparation`); a forecast applies the same to a new grid:
scale to [0, 1], resize by the same *factor* (not to the same size: a 700 x 700 composite at factor 4
becomes 175 x 175), forecast in tiles of the model's frame size (``crop_size`` if trained on crops, else
``frame_size``), then resize back to the input grid (bilinear) and map back to physical units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nowcast_pl.data.transforms import RESIZE_METHODS, resize_frames, scale_to_unit, unit_to_physical

STATE_KEY = "frame_preparation"
"""Key of the recipe in the data module's checkpoint state (``checkpoint["RadarDataModule"]``)."""


@dataclass(frozen=True)
class FramePreparation:
    """The recipe from store frames to model frames.

    Attributes:
        value_range: physical (lo, hi) mapped to 0 and 1.
        units: physical units of the store (e.g. ``"dBZ"``, ``"mm h-1"``).
        time_step_minutes: minutes between frames.
        tile: (h, w) frames the model was trained on (the crop size when trained on crops).
        factor: (fy, fx) store pixels per model pixel (1 when the store's grid was kept or padded).
        resize_method: the data module's resize method (``area``, ``bilinear``, ``max``, ...).
        antialias: the data module's antialias flag.
    """

    value_range: tuple[float, float]
    units: str
    time_step_minutes: float
    tile: tuple[int, int]
    factor: tuple[float, float] = (1.0, 1.0)
    resize_method: str = "bilinear"
    antialias: bool = False

    def __post_init__(self) -> None:
        if self.resize_method not in RESIZE_METHODS:
            raise ValueError(f"frame preparation: resize_method {self.resize_method!r} is not one of {RESIZE_METHODS}")
        if min(self.factor) <= 0 or min(self.tile) < 1:
            raise ValueError(f"frame preparation: factor {self.factor} and tile {self.tile} must be positive")

    @classmethod
    def of_data_module(cls, native: tuple[int, int], frame_size: tuple[int, int] | None, resize_method: str,
                       antialias: bool, *, crop: tuple[int, int] | None, value_range: tuple[float, float], units: str,
                       time_step_minutes: float) -> FramePreparation:
        """The recipe of a data module that resizes ``native`` store frames to ``frame_size`` (None: kept) and
        may crop ``crop`` windows from them."""
        size = tuple(frame_size or native)
        if resize_method == "pad":
            factor = (1.0, 1.0)
        else:
            factor = tuple(float(n) / float(s) for n, s in zip(native, size, strict=True))
        return cls(value_range=(float(value_range[0]), float(value_range[1])), units=units,
                   time_step_minutes=float(time_step_minutes), tile=tuple(crop or size), factor=factor,
                   resize_method=resize_method, antialias=antialias)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (lists, floats, strings) for a checkpoint."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> FramePreparation:
        """Inverse of :meth:`as_dict`."""
        return cls(value_range=tuple(map(float, record["value_range"])), units=str(record["units"]),
                   time_step_minutes=float(record["time_step_minutes"]), tile=tuple(map(int, record["tile"])),
                   factor=tuple(map(float, record["factor"])), resize_method=str(record["resize_method"]),
                   antialias=bool(record["antialias"]))

    def model_grid(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The model-grid size of an input grid ``shape`` (H, W): ``round(H / fy), round(W / fx)``, at least 1."""
        return tuple(max(1, round(n / f)) for n, f in zip(shape, self.factor, strict=True))

    def prepare(self, physical: np.ndarray) -> np.ndarray:
        """Physical frames (T, H, W), NaN = no data → (T, h, w) float32 model frames in [0, 1] (no data = 0)."""
        values, _ = scale_to_unit(physical, self.value_range)
        size = self.model_grid(physical.shape[-2:])
        if size == tuple(physical.shape[-2:]):
            return values
        frames = torch.from_numpy(values)[:, None]
        if self.resize_method == "max":  # block maximum; blocks of uneven size where H is not a multiple
            resized = F.adaptive_max_pool2d(frames, size)
        else:
            resized = resize_frames(frames, size, method=self.resize_method, antialias=self.antialias)
        return resized[:, 0].clamp_(0.0, 1.0).numpy()

    def restore(self, frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Model frames (T, h, w) in [0, 1] → (T, H, W) = ``shape`` physical values (bilinear upsampling)."""
        if tuple(frames.shape[-2:]) != tuple(shape):
            resized = F.interpolate(torch.from_numpy(np.ascontiguousarray(frames))[:, None], size=tuple(shape),
                                    mode="bilinear", align_corners=False)
            frames = resized[:, 0].numpy()
        return unit_to_physical(frames, self.value_range).astype(np.float32)
