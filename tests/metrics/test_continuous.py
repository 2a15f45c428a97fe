"""MeanError on hand-made tensors; FrameSSIM against a SciPy reference and torchmetrics."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from torchmetrics.functional.image import structural_similarity_index_measure

from nowcast_pl.metrics import FrameSSIM, MeanError


def reference_ssim_map(preds: np.ndarray, target: np.ndarray, data_range: float) -> np.ndarray:
    """Wang et al. (2004) SSIM map of one frame: 11-wide Gaussian (σ 1.5) filter, 5-px border cropped."""
    radius = 5

    def blur(image):
        return ndimage.gaussian_filter(image, sigma=1.5, truncate=radius / 1.5, mode="reflect")

    x, y = preds.astype(np.float64), target.astype(np.float64)
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim[radius:-radius, radius:-radius]


def smooth_fields(seed: int, shape=(2, 3, 24, 28), data_range: float = 70.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Correlated (preds, target) pair in [0, data_range] with structure at several scales."""
    generator = np.random.default_rng(seed)
    target = ndimage.gaussian_filter(generator.random(shape), sigma=(0, 0, 2, 2))
    preds = 0.7 * target + 0.3 * ndimage.gaussian_filter(generator.random(shape), sigma=(0, 0, 1, 1))
    scale = data_range / max(target.max(), preds.max())
    return torch.from_numpy(preds * scale).float(), torch.from_numpy(target * scale).float()


def test_mean_error_exact_values_per_lead_time():
    preds = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # (1, 2, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 4.0]], [[1.0, -1.0], [2.0, 0.0]]]])
    metric = MeanError(lead_times=2)
    metric.update(preds, target)
    results = metric.compute()
    # lead 1 errors 0, 2, 3, 0; lead 2 errors -1, 1, -2, 0.
    expected = {"mse/lead_01": 13 / 4, "mse/lead_02": 6 / 4, "mae/lead_01": 5 / 4, "mae/lead_02": 4 / 4}
    expected |= {"mse": (13 / 4 + 6 / 4) / 2, "mae": (5 / 4 + 1) / 2}
    assert results.keys() == expected.keys()
    for key, value in expected.items():
        assert results[key].item() == pytest.approx(value)


def test_mean_error_masks_pixels_and_accumulates_batches():
    preds = torch.tensor([1.0, 5.0, 2.0, 100.0]).view(2, 1, 1, 2)
    target = torch.zeros(2, 1, 1, 2)
    mask = torch.tensor([True, True, True, False]).view(2, 1, 1, 2)
    metric = MeanError(lead_times=1)
    metric.update(preds[:1], target[:1], mask[:1])
    metric.update(preds[1:], target[1:], mask[1:])
    results = metric.compute()
    assert results["mse"].item() == pytest.approx((1 + 25 + 4) / 3)
    assert results["mae/lead_01"].item() == pytest.approx(8 / 3)
    assert metric.pixel_count.tolist() == [3]


def test_mean_error_fully_masked_lead_is_nan_with_warning():
    metric = MeanError(lead_times=2, require_mask=True)
    with pytest.raises(ValueError, match="mask"):
        metric.update(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))
    mask = torch.tensor([True, False]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    metric.update(torch.ones(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), mask)
    with pytest.warns(UserWarning, match="mse/lead_02"):
        results = metric.compute()
    assert results["mse/lead_01"].item() == 1.0
    assert results["mse/lead_02"].isnan() and results["mse"].isnan()


@pytest.mark.parametrize("data_range", [1.0, 70.0, 255.0])
def test_frame_ssim_matches_scipy_reference(data_range):
    preds, target = smooth_fields(seed=0, data_range=data_range)
    metric = FrameSSIM(lead_times=3, data_range=data_range)
    metric.update(preds[:1], target[:1])
    metric.update(preds[1:], target[1:])
    results = metric.compute()
    frames = np.array(
        [
            [reference_ssim_map(preds[b, t].numpy(), target[b, t].numpy(), data_range).mean() for t in range(3)]
            for b in range(2)
        ]
    )
    assert 0.2 < frames.min() and frames.max() < 0.99, "fixture should give non-trivial SSIM"
    for lead in range(3):
        assert results[f"ssim/lead_{lead + 1:02d}"].item() == pytest.approx(frames[:, lead].mean(), abs=1e-6)
    assert results["ssim"].item() == pytest.approx(frames.mean(), abs=1e-6)


def test_frame_ssim_equals_torchmetrics_map_cropped_by_five_pixels():
    """torchmetrics' map (reflect padding) cropped by 5 px is the valid map; torchmetrics < PR #2721
    (Sep 2024, e.g. STLDM's 0.11) averaged that crop, torchmetrics 1.9 averages the whole padded map."""
    preds, target = smooth_fields(seed=1, shape=(1, 4, 32, 32))
    metric = FrameSSIM(lead_times=4, data_range=70.0)
    metric.update(preds, target)
    whole_map_mean, full_map = structural_similarity_index_measure(
        preds[0, :, None].double(),
        target[0, :, None].double(),
        data_range=70.0,
        reduction="none",
        return_full_image=True,
    )
    cropped_mean = full_map[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))
    torch.testing.assert_close(metric.ssim_sum, cropped_mean, atol=1e-9, rtol=0)
    assert not torch.allclose(metric.ssim_sum, whole_map_mean, atol=1e-3)


def test_frame_ssim_identity_and_bfloat16_autocast():
    preds, target = smooth_fields(seed=2)
    identical = FrameSSIM(lead_times=3, data_range=70.0)
    identical.update(target, target)
    assert identical.compute()["ssim"].item() == pytest.approx(1.0)
    plain, autocast = FrameSSIM(lead_times=3, data_range=70.0), FrameSSIM(lead_times=3, data_range=70.0)
    plain.update(preds, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast.update(preds, target)
    torch.testing.assert_close(autocast.ssim_sum, plain.ssim_sum)


def test_frame_ssim_averages_the_map_over_valid_pixels_and_skips_empty_frames():
    preds, target = smooth_fields(seed=3)
    mask = torch.ones(2, 3, 24, 28, dtype=torch.bool)
    mask[:, :, 8:12, 9:20] = False
    mask[1, 2] = False
    metric = FrameSSIM(lead_times=3, data_range=70.0)
    metric.update(preds, target, mask)
    assert metric.frame_count.tolist() == [2, 2, 1]
    preds, target = preds * mask, target * mask  # masked pixels enter the windows as 0
    cropped = mask[..., 5:-5, 5:-5].numpy()
    for lead in range(3):
        frames = [
            reference_ssim_map(preds[b, lead].numpy(), target[b, lead].numpy(), 70.0)[cropped[b, lead]].mean()
            for b in range(2)
            if cropped[b, lead].any()
        ]
        assert metric.ssim_sum[lead].item() == pytest.approx(sum(frames), abs=1e-6)


def test_frame_ssim_rejects_small_frames_and_bad_range():
    with pytest.raises(ValueError, match="11x11"):
        FrameSSIM(lead_times=1, data_range=1.0).update(torch.zeros(1, 1, 10, 40), torch.zeros(1, 1, 10, 40))
    with pytest.raises(ValueError, match="data_range"):
        FrameSSIM(lead_times=1, data_range=0.0)
