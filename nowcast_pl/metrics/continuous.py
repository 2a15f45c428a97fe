"""Continuous scores per lead time: MSE, MAE and frame-wise SSIM.

States are sums with ``dist_reduce_fx="sum"``, so values are exact under DDP. A score whose denominator is
zero (e.g. a lead time whose pixels are all masked) is NaN and a warning names it.
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from nowcast_pl.metrics.inputs import as_frames, lead_time_scores, positive_int, warn_if_undefined

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


class MeanError(Metric):
    """Mean squared and mean absolute error per lead time, over valid pixels.

    ``mse/lead_t`` = sum of squared errors / number of valid pixels at lead time t (whole test set);
    ``mse`` = mean of the per-lead values (equal to the global pixel mean when no pixel is masked, which
    is DiffCast's "per frame, then samples, then lead times" average). Same for ``mae``. Units are those of
    the evaluation space (dBZ², dBZ, ...).

    Args:
        lead_times: T, number of lead times in every update.
        require_mask: raise in :meth:`update` if no mask is given.
        kwargs: forwarded to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, *, lead_times: int, require_mask: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lead_times = positive_int(lead_times, "lead_times")
        self.require_mask = require_mask
        for state in ("squared_error_sum", "absolute_error_sum"):
            self.add_state(state, torch.zeros(lead_times, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pixel_count", torch.zeros(lead_times, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate errors; shapes and units as in :func:`as_frames`."""
        preds, target, valid = as_frames(
            preds, target, mask, lead_times=self.lead_times, require_mask=self.require_mask
        )
        error = torch.where(valid, preds - target, preds.new_zeros(()))
        self.squared_error_sum += error.square().sum(dim=(0, 2, 3), dtype=torch.float64)
        self.absolute_error_sum += error.abs().sum(dim=(0, 2, 3), dtype=torch.float64)
        self.pixel_count += valid.sum(dim=(0, 2, 3))

    def compute(self) -> dict[str, Tensor]:
        """Return ``mse``, ``mse/lead_01`` ..., ``mae``, ``mae/lead_01`` ... (NaN where no pixel counted)."""
        count = self.pixel_count.to(torch.float64)
        scores = lead_time_scores("mse", self.squared_error_sum / count)
        scores |= lead_time_scores("mae", self.absolute_error_sum / count)
        warn_if_undefined(scores, type(self).__name__, "no valid pixel at that lead time")
        return scores


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """(size,) float64 sampled Gaussian normalised to sum 1 (what ``cv2.getGaussianKernel`` returns)."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(offsets**2) / (2 * sigma**2))
    return window / window.sum()


def ssim_maps(preds: Tensor, target: Tensor, data_range: float) -> Tensor:
    """SSIM map of each frame on the valid region of the 11×11 Gaussian window (Wang et al. 2004, eq. 13).

    Args:
        preds: (N, H, W) float, evaluation value space.
        target: (N, H, W) float.
        data_range: L in C1 = (0.01 L)², C2 = (0.03 L)², same units as the fields.

    Returns:
        (N, H - 10, W - 10) float64 (float64 is never autocast to bf16). The border pixels whose window
        would leave the frame are dropped, which equals DiffCast's filter-with-reflect-101-then-crop-5-px.
    """
    window = gaussian_window().to(preds.device)
    x, y = preds.to(torch.float64)[:, None], target.to(torch.float64)[:, None]
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    moments = F.conv2d(moments, window.view(1, 1, -1, 1).expand(5, 1, -1, 1), groups=5)
    moments = F.conv2d(moments, window.view(1, 1, 1, -1).expand(5, 1, 1, -1), groups=5)
    mu_x, mu_y, xx, yy, xy = moments.unbind(dim=1)
    var_x, var_y, cov_xy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    return numerator / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


class FrameSSIM(Metric):
    """Structural similarity per frame, averaged over frames per lead time.

    Each frame's score is the mean of its SSIM map (:func:`ssim_maps`) over valid pixels of the cropped
    region; masked pixels enter their neighbours' windows as 0 in both fields (see :func:`as_frames`). A
    frame with no valid pixel is skipped.
    ``ssim/lead_t`` = mean frame score at lead time t over the test set, ``ssim`` = mean over lead times.
    For (N, 1, H, W) frames and no mask, the per-frame values equal torchmetrics'
    ``structural_similarity_index_measure(..., data_range=L, reduction="none")`` (reflect padding, then the
    same crop); STLDM instead averages torchmetrics' batch means over batches.

    Args:
        lead_times: T, number of lead times in every update.
        data_range: L, the value range of the evaluation space (e.g. 255 for 0-255 pixels, 70 for dBZ/70).
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        ValueError: if ``data_range`` is not positive.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, *, lead_times: int, data_range: float, **kwargs) -> None:
        super().__init__(**kwargs)
        if not data_range > 0:
            raise ValueError(f"data_range must be > 0, got {data_range}")
        self.lead_times = positive_int(lead_times, "lead_times")
        self.data_range = float(data_range)
        self.add_state("ssim_sum", torch.zeros(lead_times, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frame_count", torch.zeros(lead_times, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate per-frame SSIM; shapes and units as in :func:`as_frames`, H and W at least 11.

        Raises:
            ValueError: if a frame is smaller than the 11×11 window.
        """
        preds, target, valid = as_frames(preds, target, mask, lead_times=self.lead_times)
        batch, lead_times, height, width = preds.shape
        if min(height, width) < SSIM_WINDOW:
            raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {height}x{width}")
        maps = ssim_maps(preds.flatten(0, 1), target.flatten(0, 1), self.data_range)
        border = SSIM_WINDOW // 2
        valid = valid[..., border : height - border, border : width - border]
        maps = torch.where(valid.flatten(0, 1), maps, 0.0).view(batch, lead_times, -1)
        valid_count = valid.sum(dim=(2, 3))
        frame_ssim = maps.sum(dim=2) / valid_count.clamp(min=1)
        self.ssim_sum += frame_ssim.sum(dim=0)
        self.frame_count += (valid_count > 0).sum(dim=0)

    def compute(self) -> dict[str, Tensor]:
        """Return ``ssim``, ``ssim/lead_01`` ... (NaN where no frame counted)."""
        scores = lead_time_scores("ssim", self.ssim_sum / self.frame_count)
        warn_if_undefined(scores, type(self).__name__, "no frame with a valid pixel at that lead time")
        return scores
