"""Tiled forecasts: layout and padding, blending weights, coherent noise, seams, and memory bounded by a tile batch."""

import tracemalloc

import numpy as np
import pytest
import torch

from nowcast_pl.diffusion.noise import member_generators, randn_like_rows
from nowcast_pl.forecasting import forecast_tiles, plan_tiles
from nowcast_pl.forecasting.noise import TileNoise, domain_noise
from nowcast_pl.forecasting.seams import seam_statistics
from nowcast_pl.forecasting.tiles import crop_padded
from nowcast_pl.models.baselines import PersistenceTask
from nowcast_pl.tasks.base import NowcastTask
from tests.helpers.toy_diffusion import ToyDiffusionTask


class NoiseEcho(NowcastTask):
    """Stochastic model whose forecast is its noise: 0.5 + 0.1 z, z drawn at ``stride`` (nearest upsampled)."""

    stochastic = True
    accepts_row_noise = True

    def __init__(self, stride: int = 1, **kwargs):
        super().__init__(in_frames=2, out_frames=3, thresholds=[0.5], protocol="pysteps", **kwargs)
        self.stride = stride
        self.largest_input = 0

    def forecast_rows(self, inputs, generators):
        self.largest_input = max(self.largest_input, inputs.numel())
        r, _, _, h, w = inputs.shape
        z = randn_like_rows((r, self.out_frames, 1, h // self.stride, w // self.stride), generators)
        return 0.5 + 0.1 * z.repeat_interleave(self.stride, -2).repeat_interleave(self.stride, -1)


def test_layout_covers_the_domain_with_overlapping_tiles_on_the_noise_stride():
    layout = plan_tiles((70, 33), (16, 16), overlap=5, multiple=4)
    assert layout.origins_y == (0, 8, 16, 24, 32, 40, 48, 56) and layout.padded == (72, 40)
    assert layout.origins_x == (0, 8, 16, 24) and len(layout) == 32
    small = plan_tiles((5, 16), (16, 16), overlap=4)
    assert small.origins_y == (0,) and small.origins_x == (0,) and small.padded == (16, 16)
    with pytest.raises(ValueError, match="overlap must be in"):
        plan_tiles((40, 40), (16, 16), overlap=16)
    with pytest.raises(ValueError, match="not a multiple of the model's noise stride 8"):
        plan_tiles((40, 40), (12, 12), overlap=4, multiple=8)


def test_blending_weights_ramp_smoothly_and_sum_to_one_across_an_exact_overlap():
    layout = plan_tiles((28, 28), (16, 16), overlap=4)
    weights = layout.weights()
    assert weights.min() > 0 and weights[8, 8] == 1.0 and weights[0, 0] < 0.01
    np.testing.assert_allclose(weights[8, 12:] + weights[8, :4], 1.0)  # step 12: tile 2 starts at column 12


def test_crop_padded_fills_zeros_past_the_frames():
    frames = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    crop = crop_padded(frames, 3, 4, (4, 4))
    np.testing.assert_array_equal(crop[:, :2, :2], frames[:, 3:, 4:])
    assert (crop[:, 2:] == 0).all() and (crop[:, :, 2:] == 0).all()


@pytest.mark.parametrize("stride", [1, 4])
def test_every_member_is_one_noise_field_whatever_the_tiling(stride):
    model = NoiseEcho(stride=stride).eval()
    frames = np.zeros((2, 45, 37), np.float32)
    layouts = [plan_tiles((45, 37), (16, 16), overlap=o, multiple=stride) for o in (4, 8)]
    results = [forecast_tiles(model, frames, layout, members=2, seed=3, leads=3, tile_batch=b)
               for layout, b in zip(layouts, (5, 32), strict=True)]
    padded = layouts[0].padded
    for member in range(2):
        field = domain_noise(3, member, 0, stride, (3, 1), 0, 0, padded[0] // stride, padded[1] // stride)
        field = field.repeat_interleave(stride, -2).repeat_interleave(stride, -1)[:, 0, :45, :37]
        for result in results:
            np.testing.assert_allclose(result[member], 0.5 + 0.1 * field.numpy(), atol=1e-6)
    assert np.abs(results[0][0] - results[0][1]).mean() > 0.05  # members differ


def test_tile_noise_counts_draws_and_checks_the_latent_grid():
    source = TileNoise(seed=0, member=1, origin=(8, 16), tile=(16, 16))
    first, second = source((2, 4, 4)), source((2, 4, 4))
    np.testing.assert_array_equal(first, domain_noise(0, 1, 0, 4, (2,), 2, 4, 4, 4))
    np.testing.assert_array_equal(second, domain_noise(0, 1, 1, 4, (2,), 2, 4, 4, 4))
    with pytest.raises(ValueError, match="not on the noise grid of stride 16"):
        TileNoise(seed=0, member=0, origin=(8, 0), tile=(16, 16))((1, 1, 1))
    with pytest.raises(ValueError, match="returned shape"):
        randn_like_rows((1, 2, 3), [lambda shape: torch.zeros(2)])


def test_generators_still_draw_exactly_as_before():
    generators = member_generators(5, [0, 1], [2, 3])
    expected = torch.stack([torch.randn((3, 4), generator=g) for g in member_generators(5, [0, 1], [2, 3])])
    torch.testing.assert_close(randn_like_rows((2, 3, 4), generators), expected, rtol=0, atol=0)


def test_seams_of_a_trained_toy_diffusion_model_stay_within_ten_percent():
    torch.manual_seed(0)
    model = ToyDiffusionTask(in_frames=2, out_frames=3, thresholds=[0.5], protocol="pysteps", sampling_steps=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    ramp = torch.linspace(0, 1, 16)
    for step in range(10):
        frames = ((ramp[None, :] + ramp[:, None] + 0.05 * step) % 1)[None, None, None].expand(4, 5, 1, 16, 16)
        loss = model.training_loss({"inputs": frames[:, :2], "targets": frames[:, 2:]})["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    y, x = np.mgrid[:40, :40] / 40.0
    frames = np.stack([(np.sin(6 * x + t) * np.cos(4 * y) + 1) / 2 for t in (0, 0.3)]).astype(np.float32)
    seams = {}
    for overlap in (4, 0):  # 3 x 3 tiles blended; 3 x 3 abutting tiles (hard borders) for contrast
        layout = plan_tiles((40, 40), (16, 16), overlap=overlap)
        with torch.no_grad():
            result = forecast_tiles(model.eval(), frames, layout, members=2, seed=0, leads=3, tile_batch=9)
        seams[overlap] = seam_statistics(result, layout)
    assert seams[4]["border_pairs"] > 0 and abs(seams[4]["ratio"] - 1) <= 0.10, seams
    assert seams[0]["ratio"] > 1.05, seams  # the measure does see hard tile borders (1.10 here)


def test_memory_is_bounded_by_a_tile_batch_not_the_domain():
    domain, tile, batch = (240, 300), (16, 16), 6
    model = NoiseEcho().eval()
    frames = np.zeros((2, *domain), np.float32)
    layout = plan_tiles(domain, tile, overlap=4)
    tracemalloc.start()
    result = forecast_tiles(model, frames, layout, members=1, seed=0, leads=3, tile_batch=batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(layout) > 400
    assert model.largest_input == batch * 2 * tile[0] * tile[1]
    domain_arrays = result.nbytes + domain[0] * domain[1] * 4  # the blended result and the summed weights
    assert peak < domain_arrays + 2**20, (peak, domain_arrays)


def test_deterministic_models_forecast_through_the_same_tiles():
    model = PersistenceTask(in_frames=2, out_frames=3, thresholds=[0.5], protocol="pysteps")
    frames = np.random.default_rng(0).uniform(0, 1, (2, 37, 29)).astype(np.float32)
    result = forecast_tiles(model, frames, plan_tiles((37, 29), (16, 16), overlap=4), members=1, seed=0, leads=3,
                            tile_batch=4)
    np.testing.assert_allclose(result[0], np.broadcast_to(frames[-1], (3, 37, 29)), atol=1e-6)


def test_a_latent_model_forecasts_in_tiles_on_its_latent_noise_grid():
    from nowcast_pl.models.stldm import STLDMTask

    torch.manual_seed(0)
    model = STLDMTask(in_frames=2, out_frames=2, latent_channels=4, translator_width=16, translator_depth=2,
                      unet_base=8, unet_mults=(1, 2), patch_size=2, groups=4, heads=2, dim_head=4, sampling_steps=2,
                      thresholds=[0.3], protocol="stldm").eval()
    stride = model.noise_stride
    layout = plan_tiles((24, 24), (16, 16), overlap=6, multiple=stride)
    assert stride == 4 and layout.origins_y == (0, 8)  # step 10 rounded down to the latent stride
    frames = np.random.default_rng(0).uniform(0, 1, (2, 24, 24)).astype(np.float32)
    with torch.no_grad():
        result = forecast_tiles(model, frames, layout, members=2, seed=0, leads=2, tile_batch=8)
    assert result.shape == (2, 2, 24, 24) and np.abs(result[0] - result[1]).mean() > 1e-3
