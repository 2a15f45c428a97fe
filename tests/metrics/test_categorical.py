"""CategoricalScores against pysteps and a brute-force NumPy reference; protocols and key formats."""

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from nowcast_pl.metrics import (
    PROTOCOLS,
    CategoricalScores,
    build_metrics,
    flatten_scores,
    max_pool_frames,
    resolve_protocol,
    threshold_label,
)
from tests.helpers.gloo import results_of_two_gloo_ranks

THRESHOLDS = (5.0, 20.0, 40.0)
STATES = ("hits", "misses", "false_alarms", "correct_negatives")
# (kernel, stride, padding, frame side): pixel scores, DiffCast non-overlapping, STLDM overlapping.
POOLINGS = [
    (1, 1, "none", 32),
    (4, 4, "diffcast", 32),
    (16, 16, "diffcast", 40),
    (4, 1, "none", 32),
    (16, 4, "none", 40),
]


def rain_fields(seed: int, batch: int = 2, lead_times: int = 3, size: int = 32) -> tuple[torch.Tensor, ...]:
    """(preds, target, mask): values in [0, 50) with rare events (frame-dependent density), ~25% masked."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, lead_times, size, size)
    sparsity = 2 + 40 * torch.rand((2, batch, lead_times, 1, 1), generator=generator)
    preds, target = 50 * torch.rand((2, *shape), generator=generator) ** sparsity
    mask = torch.rand(shape, generator=generator) > 0.25
    return preds, target, mask


def states_of(metric: CategoricalScores) -> np.ndarray:
    """(4, n_thresholds, T) int64 array of H, M, F, R."""
    return np.stack([getattr(metric, name).numpy() for name in STATES])


def reference_pooled_frame(values, valid, kernel, stride, padding, quantize):
    """One (H, W) frame pooled by explicit loops over windows; masked pixels never win the max."""
    if quantize:
        values = np.floor(np.maximum(values, 0.0))
    if padding == "diffcast":
        extra = ((0, kernel - values.shape[0] % kernel), (0, kernel - values.shape[1] % kernel))
        values = np.pad(values, extra, constant_values=0.0)
        valid = np.pad(valid, extra, constant_values=True)
    rows = (values.shape[0] - kernel) // stride + 1
    cols = (values.shape[1] - kernel) // stride + 1
    pooled, pooled_valid = np.full((rows, cols), -np.inf), np.zeros((rows, cols), dtype=bool)
    for row in range(rows):
        for col in range(cols):
            window = (slice(row * stride, row * stride + kernel), slice(col * stride, col * stride + kernel))
            if valid[window].any():
                pooled[row, col] = values[window][valid[window]].max()
                pooled_valid[row, col] = True
    return pooled, pooled_valid


def reference_counts(preds, target, mask, *, kernel=1, stride=1, padding="none", comparison=">=", quantize=False):
    """(4, n_thresholds, T) H, M, F, R counted pixel by pixel."""
    preds, target, mask = (np.asarray(array, dtype=np.float64) for array in (preds, target, mask))
    batch, lead_times = preds.shape[:2]
    counts = np.zeros((4, len(THRESHOLDS), lead_times), dtype=np.int64)
    for sample in range(batch):
        for lead in range(lead_times):
            valid = mask[sample, lead] > 0
            forecast, pooled_valid = reference_pooled_frame(
                preds[sample, lead], valid, kernel, stride, padding, quantize
            )
            observed, _ = reference_pooled_frame(target[sample, lead], valid, kernel, stride, padding, quantize)
            for index, threshold in enumerate(THRESHOLDS):
                for (row, col), counted in np.ndenumerate(pooled_valid):
                    if not counted:
                        continue
                    forecast_event = reference_exceeds(forecast[row, col], threshold, comparison)
                    observed_event = reference_exceeds(observed[row, col], threshold, comparison)
                    cell = {(True, True): 0, (False, True): 1, (True, False): 2, (False, False): 3}
                    counts[cell[(forecast_event, observed_event)], index, lead] += 1
    return counts


def reference_exceeds(value, threshold, comparison):
    return bool(value >= threshold) if comparison == ">=" else bool(value > threshold)


def reference_scores(counts, aggregation):
    """{score: (n_thresholds,)} from (4, n, T) counts; per_lead = score per lead time, then mean."""
    hits, misses, false_alarms, negatives = counts.astype(np.float64)
    if aggregation == "global":
        hits, misses, false_alarms, negatives = (c.sum(axis=-1, keepdims=True) for c in counts.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = {
            "csi": hits / (hits + misses + false_alarms),
            "pod": hits / (hits + misses),
            "far": false_alarms / (hits + false_alarms),
            "hss": 2
            * (hits * negatives - false_alarms * misses)
            / ((hits + misses) * (misses + negatives) + (hits + false_alarms) * (false_alarms + negatives)),
        }
    return {name: values.mean(axis=-1) for name, values in scores.items()}


@pytest.mark.parametrize("aggregation", ["per_lead", "global"])
def test_counts_and_scores_match_pysteps(aggregation):
    detcatscores = pytest.importorskip("pysteps.verification.detcatscores")
    preds, target, _ = rain_fields(seed=0)
    metric = CategoricalScores(THRESHOLDS, lead_times=3, comparison=">", aggregation=aggregation)
    for batch in (slice(0, 1), slice(1, 2)):
        metric.update(preds[batch], target[batch])
    results = metric.compute()
    for index, threshold in enumerate(THRESHOLDS):
        per_lead = detcatscores.det_cat_fct_init(threshold, axis=(0, 2, 3))
        overall = detcatscores.det_cat_fct_init(threshold, axis=None)
        for batch in (slice(0, 1), slice(1, 2)):
            detcatscores.det_cat_fct_accum(per_lead, preds[batch].numpy(), target[batch].numpy())
            detcatscores.det_cat_fct_accum(overall, preds[batch].numpy(), target[batch].numpy())
        for state in STATES:
            np.testing.assert_array_equal(getattr(metric, state)[index].numpy(), per_lead[state])
        lead_scores = detcatscores.det_cat_fct_compute(per_lead, scores=["CSI", "POD", "FAR", "HSS"])
        global_scores = detcatscores.det_cat_fct_compute(overall, scores=["CSI", "POD", "FAR", "HSS"])
        label = threshold_label(threshold)
        for score in ("csi", "pod", "far", "hss"):
            expected_leads = lead_scores[score.upper()]
            for lead in range(3):
                assert results[f"{score}@{label}/lead_{lead + 1:02d}"].item() == pytest.approx(expected_leads[lead])
            expected = global_scores[score.upper()] if aggregation == "global" else np.mean(expected_leads)
            assert results[f"{score}@{label}"].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.filterwarnings("ignore:CategoricalScores.*undefined")
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("aggregation", ["per_lead", "global"])
@pytest.mark.parametrize(("kernel", "stride", "padding", "size"), POOLINGS)
def test_matches_brute_force_reference(kernel, stride, padding, size, aggregation, masked):
    preds, target, mask = rain_fields(seed=kernel * 10 + stride, size=size)
    mask = mask if masked else torch.ones_like(mask)
    metric = CategoricalScores(
        THRESHOLDS, lead_times=3, aggregation=aggregation, pool_kernel=kernel, pool_stride=stride, pool_padding=padding
    )
    metric.update(preds, target, mask if masked else None)
    expected_counts = reference_counts(preds, target, mask, kernel=kernel, stride=stride, padding=padding)
    np.testing.assert_array_equal(states_of(metric), expected_counts)
    assert expected_counts[0].sum() > 0, "fixture should produce hits"
    results, expected = metric.compute(), reference_scores(expected_counts, aggregation)
    for score, values in expected.items():
        for index, threshold in enumerate(THRESHOLDS):
            key = f"{score}{metric.tag}@{threshold_label(threshold)}"
            np.testing.assert_allclose(results[key].item(), values[index], rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(results[f"{score}{metric.tag}_m"].item(), values.mean(), rtol=1e-6)


def test_multi_batch_updates_equal_one_update_on_concatenation():
    preds, target, mask = rain_fields(seed=3, batch=5, size=40)
    kwargs = {"lead_times": 3, "pool_kernel": 16, "pool_padding": "diffcast", "quantize": "floor"}
    split, whole = CategoricalScores(THRESHOLDS, **kwargs), CategoricalScores(THRESHOLDS, **kwargs)
    for batch in (slice(0, 2), slice(2, 3), slice(3, 5)):
        split.update(preds[batch], target[batch], mask[batch])
    whole.update(preds, target, mask)
    np.testing.assert_array_equal(states_of(split), states_of(whole))


@pytest.mark.parametrize(("kernel", "stride", "padding", "size"), POOLINGS[1:])
@pytest.mark.parametrize("comparison", [">=", ">"])
def test_pooling_commutes_with_thresholding(kernel, stride, padding, size, comparison):
    preds, _, mask = rain_fields(seed=4, size=size)
    pooled, pooled_valid = max_pool_frames(preds, mask, kernel=kernel, stride=stride, padding=padding)
    for threshold in THRESHOLDS:
        events = (preds >= threshold if comparison == ">=" else preds > threshold).float()
        pooled_events, _ = max_pool_frames(events, mask, kernel=kernel, stride=stride, padding=padding)
        value_first = (pooled >= threshold if comparison == ">=" else pooled > threshold) & pooled_valid
        assert torch.equal(value_first, (pooled_events > 0) & pooled_valid)


@pytest.mark.parametrize(("kernel", "stride"), [(4, 1), (16, 4)])
def test_overlapping_pooling_equals_binarise_then_maxpool2d(kernel, stride):
    """STLDM's recipe: threshold both fields first, then nn.MaxPool2d(kernel, stride), no padding."""
    preds, target, _ = rain_fields(seed=5, size=40)
    metric = CategoricalScores(THRESHOLDS, lead_times=3, aggregation="global", pool_kernel=kernel, pool_stride=stride)
    metric.update(preds, target)
    for index, threshold in enumerate(THRESHOLDS):
        forecast, observed = (F.max_pool2d((x >= threshold).float(), kernel, stride).bool() for x in (preds, target))
        assert metric.hits[index].sum() == (forecast & observed).sum()
        assert metric.misses[index].sum() == (~forecast & observed).sum()
        assert metric.false_alarms[index].sum() == (forecast & ~observed).sum()
        assert metric.correct_negatives[index].sum() == (~forecast & ~observed).sum()


def test_masked_pixels_and_non_finite_values_are_excluded():
    preds, target, mask = rain_fields(seed=6)
    reference = CategoricalScores(THRESHOLDS, lead_times=3, pool_kernel=4)
    reference.update(preds, target, mask)
    scrambled = CategoricalScores(THRESHOLDS, lead_times=3, pool_kernel=4)
    scrambled.update(torch.where(mask, preds, 1e3), torch.where(mask, target, float("nan")), mask)
    np.testing.assert_array_equal(states_of(scrambled), states_of(reference))
    as_nan = CategoricalScores(THRESHOLDS, lead_times=3, pool_kernel=4)
    as_nan.update(preds, torch.where(mask, target, float("nan")))
    np.testing.assert_array_equal(states_of(as_nan), states_of(reference))


def test_pooled_cells_without_valid_pixel_are_dropped():
    preds, target, _ = rain_fields(seed=6)
    mask = torch.ones_like(preds, dtype=torch.bool)
    mask[..., :4, :4] = False
    metric = CategoricalScores(THRESHOLDS, lead_times=3, pool_kernel=4)
    metric.update(preds, target, mask)
    assert (states_of(metric).sum(axis=0) == 2 * (8 * 8 - 1)).all()


def test_spatial_mask_broadcasts_and_channel_dim_is_squeezed():
    preds, target, _ = rain_fields(seed=7)
    spatial = torch.rand(32, 32, generator=torch.Generator().manual_seed(0)) > 0.5
    broadcast, explicit = (CategoricalScores(THRESHOLDS, lead_times=3) for _ in range(2))
    broadcast.update(preds[:, :, None], target[:, :, None], spatial)
    explicit.update(preds, target, spatial.expand_as(preds).clone())
    np.testing.assert_array_equal(states_of(broadcast), states_of(explicit))
    assert states_of(broadcast)[:, 0].sum() == 2 * 3 * spatial.sum()


def test_floor_quantize_is_documented_truncation():
    preds = torch.tensor([19.9, 20.7, -5.0, 3.0]).view(1, 1, 1, 4)
    target = torch.tensor([20.7, 19.9, 0.0, -1.0]).view(1, 1, 1, 4)

    def counts(comparison, quantize, threshold):
        metric = CategoricalScores([threshold], lead_times=1, comparison=comparison, quantize=quantize)
        metric.update(preds, target)
        return states_of(metric)[:, 0, 0].tolist()

    # Integer threshold with ">=": truncation never changes an event (19.9 stays below, 20.7 -> 20 stays above).
    assert counts(">=", "floor", 20) == counts(">=", "none", 20) == [0, 1, 1, 2]
    # With ">" it does: 20.7 > 20, but floor(20.7) = 20 is not.
    assert counts(">", "none", 20) == [0, 1, 1, 2]
    assert counts(">", "floor", 20) == [0, 0, 0, 4]
    # Negative values are clipped to 0 first: -5 -> 0 >= 0 and -1 -> 0 >= 0.
    assert counts(">=", "floor", 0) == [4, 0, 0, 0]
    assert counts(">=", "none", 0) == [2, 1, 1, 0]


def test_merged_half_states_equal_whole_data():
    """What DDP's sum reduction does: two ranks' states added equal one metric on all the data."""
    preds, target, mask = rain_fields(seed=8, batch=4)
    kwargs = {"lead_times": 3, "pool_kernel": 4, "pool_padding": "diffcast"}
    first, second, whole = (CategoricalScores(THRESHOLDS, **kwargs) for _ in range(3))
    first.update(preds[:2], target[:2], mask[:2])
    second.update(preds[2:], target[2:], mask[2:])
    whole.update(preds, target, mask)
    manual_sum = states_of(first) + states_of(second)
    first.merge_state(second)
    np.testing.assert_array_equal(states_of(first), states_of(whole))
    np.testing.assert_array_equal(manual_sum, states_of(whole))
    assert first.compute().keys() == whole.compute().keys()
    for key, value in whole.compute().items():
        torch.testing.assert_close(first.compute()[key], value, equal_nan=True)


def _gloo_worker(rank: int, world_size: int, rendezvous: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    preds, target, mask = rain_fields(seed=9, batch=4)
    metric = CategoricalScores(THRESHOLDS, lead_times=3, aggregation="global", pool_kernel=4)
    share = slice(rank * 2, rank * 2 + 2)
    metric.update(preds[share], target[share], mask[share])
    torch.save(metric.compute(), Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_gloo_ddp_sync_equals_single_process():
    """Rank 0 runs in this process and rank 1 in a spawned one (a single interpreter start-up)."""
    preds, target, mask = rain_fields(seed=9, batch=4)
    single = CategoricalScores(THRESHOLDS, lead_times=3, aggregation="global", pool_kernel=4)
    single.update(preds, target, mask)
    for synced in results_of_two_gloo_ranks(_gloo_worker):
        for key, value in single.compute().items():
            torch.testing.assert_close(synced[key], value, equal_nan=True)


def test_keys_labels_and_nan_for_undefined_scores():
    metric = CategoricalScores([0.5, 20.0, 17.6], lead_times=12, unit="mm/h", pool_kernel=16, pool_stride=4)
    metric.update(torch.zeros(1, 12, 16, 16), torch.zeros(1, 12, 16, 16))
    with pytest.warns(UserWarning, match="undefined"):
        results = metric.compute()
    assert [threshold_label(value) for value in (20.0, 0.5, 17.6, 133)] == ["20", "0.5", "17.6", "133"]
    assert {"csi_pool16_s4@0.5mm/h", "hss_pool16_s4@17.6mm/h/lead_12", "far_pool16_s4_m"} <= results.keys()
    assert len(results) == 4 * (3 * 13 + 1)
    assert math.isnan(results["csi_pool16_s4@20mm/h"]) and results["hss_pool16_s4@20mm/h"].isnan()
    assert results["pod_pool16_s4_m"].dtype == torch.float32


def test_bfloat16_inputs_are_scored_in_float32():
    preds, target, _ = rain_fields(seed=10)
    low, high = CategoricalScores(THRESHOLDS, lead_times=3), CategoricalScores(THRESHOLDS, lead_times=3)
    low.update(preds.bfloat16(), target.bfloat16())
    high.update(preds.bfloat16().float(), target.bfloat16().float())
    np.testing.assert_array_equal(states_of(low), states_of(high))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"comparison": "=>"}, "comparison"),
        ({"aggregation": "mean"}, "aggregation"),
        ({"pool_padding": "same"}, "pool_padding"),
        ({"scores": ("csi", "ets")}, "scores"),
        ({"lead_times": 0}, "lead_times"),
        ({"thresholds": (20, 20.0)}, "distinct"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CategoricalScores(**{"thresholds": THRESHOLDS, "lead_times": 3, **kwargs})


def test_invalid_inputs_raise():
    metric = CategoricalScores(THRESHOLDS, lead_times=3)
    frames = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="lead_times=3"):
        metric.update(torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="one shape"):
        metric.update(frames, torch.zeros(1, 3, 8, 9))
    with pytest.raises(TypeError, match="bool"):
        metric.update(frames, frames, torch.ones(8, 8))
    with pytest.raises(ValueError, match="broadcast"):
        metric.update(frames, frames, torch.ones(7, 8, dtype=torch.bool))


def test_build_metrics_raindiff_key_snapshot():
    with pytest.warns(UserWarning, match="meaningless"):
        metrics = build_metrics(
            "raindiff", thresholds=(20, 30, 35, 40), lead_times=3, unit="dBZ", data_range=70, lpips_backbone="random"
        )
    preds, target, _ = rain_fields(seed=11)
    metrics.update(preds * 1.4, target * 1.4)
    results = flatten_scores(metrics.compute())
    expected = {"csi@20dBZ", "csi_m", "hss@30dBZ/lead_03", "far@40dBZ", "pod_m", "csi_pool4_s4@20dBZ"}
    expected |= {"csi_pool16_s16_m", "ssim", "ssim/lead_01", "mse", "mae/lead_03", "lpips", "lpips/lead_02"}
    assert expected <= results.keys()
    assert not any(key.startswith(("hss_pool", "pod_pool")) for key in results)
    # pixel scores 4 * (4 * 4 + 1), pooled CSI 2 * (4 * 4 + 1), mse/mae/ssim/lpips 4 * (1 + 3).
    assert len(results) == 68 + 34 + 16
    assert all(torch.isfinite(results[key]) for key in ("csi@20dBZ", "hss@20dBZ", "ssim", "mse", "lpips"))


def test_protocol_registry():
    assert set(PROTOCOLS) >= {"diffcast", "raindiff", "stldm", "earthformer", "hko7", "pysteps"}
    diffcast, raindiff, stldm = (resolve_protocol(name) for name in ("diffcast", "raindiff", "stldm"))
    assert (diffcast.quantize, diffcast.pooled, diffcast.lpips) == (raindiff.quantize, raindiff.pooled, raindiff.lpips)
    assert [(p.kernel, p.stride, p.padding, p.aggregation) for p in stldm.pooled] == [
        (4, 1, "none", "global"),
        (16, 4, "none", "global"),
    ]
    assert resolve_protocol("pysteps").comparison == ">"
    with pytest.raises(ValueError, match="valid names: .*'diffcast'"):
        resolve_protocol("nowcastnet")


def test_hko7_protocol_requires_masks_and_stldm_keys():
    hko7 = build_metrics("hko7", thresholds=(5, 20), lead_times=3, data_range=255)
    preds, target, mask = rain_fields(seed=12)
    with pytest.raises(ValueError, match="mask"):
        hko7.update(preds, target)
    hko7.update(preds, target, mask=mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stldm = build_metrics("stldm", thresholds=(84,), lead_times=3, data_range=255, lpips_backbone="random")
    assert set(stldm.keys()) == {
        "categorical",
        "categorical_pool4_s1",
        "categorical_pool16_s4",
        "error",
        "ssim",
        "lpips",
    }
    results = flatten_scores(hko7.compute())
    assert {"csi@5", "hss@20/lead_03", "csi_m", "mse", "mae/lead_01"} <= results.keys()
    assert not any("pool" in key or key.startswith(("ssim", "lpips")) for key in results)


def test_flatten_scores_rejects_duplicates():
    value = torch.tensor(1.0)
    assert flatten_scores({"a": {"csi@1": value}, "mse": value}) == {"csi@1": value, "mse": value}
    with pytest.raises(ValueError, match="duplicate"):
        flatten_scores({"a": {"mse": value}, "b": {"mse": value}})


def test_float64_quantised_values_at_the_threshold_are_scored_in_float64_like_pysteps():
    """BoM-like 0.05 mm steps: 6 × 0.05 = 0.30000000000000004 > 0.3 in float64 but not after rounding to float32."""
    detcatscores = pytest.importorskip("pysteps.verification.detcatscores")
    generator = np.random.default_rng(0)
    preds, target = (generator.integers(0, 12, (2, 3, 16, 16)) * 0.05 for _ in range(2))
    metric = CategoricalScores([0.3], lead_times=3, comparison=">", aggregation="global", scores=("csi",))
    metric.update(torch.from_numpy(preds), torch.from_numpy(target))
    expected = detcatscores.det_cat_fct(preds, target, 0.3, scores="CSI")["CSI"]
    assert metric.compute()["csi@0.3"].item() == pytest.approx(expected, rel=1e-6)
    rounded = CategoricalScores([0.3], lead_times=3, comparison=">", aggregation="global", scores=("csi",))
    rounded.update(torch.from_numpy(preds).float(), torch.from_numpy(target).float())
    assert abs(rounded.compute()["csi@0.3"].item() - expected) > 1e-3  # the float32 rounding this test guards
