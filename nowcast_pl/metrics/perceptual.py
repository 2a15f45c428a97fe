"""LPIPS (Zhang et al. 2018) per frame and lead time, through the ``lpips`` package.

``lpips.LPIPS`` loads its ImageNet trunk (AlexNet or VGG16) from torchvision's model zoo when it is built.
Without network access that only works when the checkpoint is already in the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, see :func:`backbone_checkpoint_path`). :class:`LPIPSScore` checks the
cache first: a missing file means one warning and an empty result, or an error when ``required=True``.
The network is kept out of the module tree, so it never enters a checkpoint's ``state_dict``.
"""

import warnings
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from nowcast_pl.metrics.inputs import as_frames, lead_time_scores, positive_int, warn_if_undefined

LPIPSNet = Literal["alex", "vgg"]
Backbone = Literal["pretrained", "random"]

# torchvision weight enums that ``lpips.pretrained_networks`` gets from ``tv.alexnet/vgg16(pretrained=True)``.
_TORCHVISION_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights"}
_FRAMES_PER_PASS = 32


def backbone_checkpoint_path(net: LPIPSNet) -> Path:
    """Path where torchvision caches the ImageNet weights that ``lpips.LPIPS(net=net)`` loads.

    Args:
        net: "alex" or "vgg".

    Returns:
        ``torch.hub.get_dir()/checkpoints/<file>``, e.g. ``.../alexnet-owt-7be5be79.pth`` or
        ``.../vgg16-397923af.pth`` (file names read from the installed torchvision).
    """
    from torchvision import models

    weights = getattr(models, _TORCHVISION_WEIGHTS[net]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


class LPIPSScore(Metric):
    """Mean LPIPS distance per lead time (lower is better), one distance per frame.

    Each frame is mapped linearly from ``value_range`` to [-1, 1], optionally resized bicubically to
    ``resize_to``×``resize_to`` (STLDM: 64), clamped to [-1, 1], repeated to 3 channels and compared with
    ``lpips.LPIPS(net=net)`` (spatially averaged). Masked pixels are set to ``value_range[0]`` in both
    fields; frames without a valid pixel are skipped. ``lpips/lead_t`` = mean over the frames at lead time
    t, ``lpips`` = mean over lead times. DiffCast/RainDiff: AlexNet at full resolution; STLDM: VGG at 64.

    Args:
        lead_times: T, number of lead times in every update.
        value_range: (low, high) of the evaluation value space mapped to [-1, 1], e.g. (0, 255).
        net: LPIPS trunk, "alex" or "vgg".
        resize_to: side of the square frames fed to LPIPS; None = native resolution.
        required: raise if LPIPS cannot be built, instead of warning and reporting nothing.
        backbone: "pretrained" (ImageNet trunk, the real metric) or "random" (random trunk, for wiring tests
            only: the values are meaningless and a warning says so).
        kwargs: forwarded to :class:`torchmetrics.Metric`.

    Raises:
        FileNotFoundError: if ``required`` and the trunk checkpoint is not in the torch hub cache.
        ImportError: if ``required`` and ``lpips`` is not installed.
        ValueError: if an argument is outside the accepted values.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        *,
        lead_times: int,
        value_range: tuple[float, float],
        net: LPIPSNet = "alex",
        resize_to: int | None = None,
        required: bool = False,
        backbone: Backbone = "pretrained",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if net not in get_args(LPIPSNet) or backbone not in get_args(Backbone):
            raise ValueError(f"net={net!r} / backbone={backbone!r} not in {get_args(LPIPSNet)} / {get_args(Backbone)}")
        low, high = map(float, value_range)
        if not high > low:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
        self.lead_times = positive_int(lead_times, "lead_times")
        self.value_range = (low, high)
        self.resize_to = None if resize_to is None else positive_int(resize_to, "resize_to")
        self.add_state("lpips_sum", torch.zeros(lead_times, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frame_count", torch.zeros(lead_times, dtype=torch.int64), dist_reduce_fx="sum")
        # Set through object.__setattr__ so nn.Module does not register it: no parameters, no state_dict keys.
        object.__setattr__(self, "_network", _build_lpips(net, backbone, required))

    @property
    def available(self) -> bool:
        """False when LPIPS was skipped (missing weights or package); then :meth:`compute` returns {}."""
        return self._network is not None

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate per-frame LPIPS; shapes and units as in :func:`as_frames`."""
        preds, target, valid = as_frames(preds, target, mask, lead_times=self.lead_times)
        if not self.available:
            return
        background = preds.new_tensor(self.value_range[0])
        preds, target = torch.where(valid, preds, background), torch.where(valid, target, background)
        network = self._network.to(preds.device)
        first, second = self._to_lpips_input(preds), self._to_lpips_input(target)
        with torch.no_grad(), torch.autocast(device_type=preds.device.type, enabled=False):
            distances = torch.cat(
                [
                    network(first[start : start + _FRAMES_PER_PASS], second[start : start + _FRAMES_PER_PASS])
                    for start in range(0, first.shape[0], _FRAMES_PER_PASS)
                ]
            )
        frame_counted = valid.any(dim=(2, 3))
        distances = torch.where(frame_counted, distances.view(frame_counted.shape), 0.0)
        self.lpips_sum += distances.sum(dim=0, dtype=torch.float64)
        self.frame_count += frame_counted.sum(dim=0)

    def _to_lpips_input(self, frames: Tensor) -> Tensor:
        """(B, T, H, W) evaluation space -> (B·T, 3, h, w) float32 in [-1, 1]."""
        low, high = self.value_range
        scaled = (2 * (frames.float() - low) / (high - low) - 1).flatten(0, 1)[:, None]
        if self.resize_to is not None:
            size = (self.resize_to, self.resize_to)
            scaled = F.interpolate(scaled, size=size, mode="bicubic", align_corners=False)
        return scaled.clamp(-1, 1).expand(-1, 3, -1, -1)

    def compute(self) -> dict[str, Tensor]:
        """Return ``lpips``, ``lpips/lead_01`` ... (NaN where no frame counted); {} if LPIPS is skipped."""
        if not self.available:
            return {}
        scores = lead_time_scores("lpips", self.lpips_sum / self.frame_count)
        warn_if_undefined(scores, type(self).__name__, "no frame with a valid pixel at that lead time")
        return scores


def _build_lpips(net: LPIPSNet, backbone: Backbone, required: bool) -> nn.Module | None:
    """Build the frozen LPIPS network, or return None after one warning when it cannot be built."""
    if backbone == "pretrained":
        checkpoint = backbone_checkpoint_path(net)
        if not checkpoint.is_file():
            message = (
                f"LPIPS({net}) needs the torchvision ImageNet weights at {checkpoint}, which is missing. "
                "Set TORCH_HOME to a directory whose hub/checkpoints/ holds that file, or build the metric "
                "once with network access so torchvision downloads it."
            )
            return _unavailable(FileNotFoundError(message), required)
    try:
        import lpips
    except ImportError as error:
        return _unavailable(ImportError(f"LPIPS needs the 'lpips' package: {error}"), required)
    with warnings.catch_warnings():
        # lpips 0.1.4 still calls torchvision's deprecated ``pretrained=`` argument.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\.")
        network = lpips.LPIPS(net=net, pnet_rand=backbone == "random", verbose=False)
    if backbone == "random":
        warnings.warn(
            f"LPIPSScore(net={net!r}, backbone='random'): the trunk is randomly initialised, so LPIPS "
            "values are meaningless; use this only to test wiring.",
            UserWarning,
            stacklevel=3,
        )
    return network.eval().requires_grad_(False)


def _unavailable(error: Exception, required: bool) -> None:
    if required:
        raise error
    warnings.warn(f"LPIPS is skipped and reports nothing: {error}", UserWarning, stacklevel=4)
