"""SimVP network and its layers: exact parameter counts, shapes, gradients, rollout and errors."""

import math

import pytest
import torch

from nowcast_pl.layers import GSTABlock, GSTATranslator, SpatialDecoder, SpatialEncoder
from nowcast_pl.layers.gsta import drop_path, drop_path_rates
from nowcast_pl.models.simvp import SimVP
from nowcast_pl.models.simvp.inception import IncepUTranslator

TINY = dict(channels=1, hid_S=8, hid_T=16, N_S=2, N_T=2)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny(translator: str = "incepu", rollout: str = "direct", in_frames: int = 5, out_frames: int = 20,
         **kwargs) -> SimVP:
    torch.manual_seed(0)
    args = {**TINY, **kwargs}
    return SimVP(in_frames=in_frames, out_frames=out_frames, translator=translator, rollout=rollout, **args)


def test_raindiff_backbone_parameter_counts():
    with torch.device("meta"):
        model = SimVP(in_frames=5, out_frames=20, rollout="iterative", translator="incepu", hid_S=64,
                      hid_T=256, N_S=2, N_T=6)
    assert n_params(model.encoder) == 37_824
    assert n_params(model.translator) == 10_840_320
    assert n_params(model.decoder) == 184_961
    assert n_params(model) == 11_063_105


@pytest.mark.parametrize(
    ("channels_in", "channels_out", "first", "last", "total"),
    [(160, 1280, 622_432, 5_989_120, 38_606_432), (416, 768, 3_747_424, 5_726_464, 41_468_768)],
    ids=["hko", "sevir"],
)
def test_stldm_gsta_translator_parameter_counts(channels_in, channels_out, first, last, total):
    with torch.device("meta"):
        translator = GSTATranslator(channels_in, 512, channels_out, depth=8)
    per_stage = [n_params(stage) for stage in translator.stages]
    assert per_stage == [first] + [5_332_480] * 6 + [last]
    assert n_params(translator) == total


def test_drop_path_rates_follow_simvp_v2_rule():
    rates = drop_path_rates(8, 0.0)
    assert rates[0] == pytest.approx(1e-2)
    assert rates[-1] == 0.0
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    assert drop_path_rates(4, 0.1) == pytest.approx([0.01, 0.04, 0.07, 0.1])
    translator = GSTATranslator(16, 16, 16, depth=3, drop_path=0.1)
    assert [stage[0].drop_path.rate for stage in translator.stages] == pytest.approx([0.01, 0.055, 0.1])


def test_drop_path_zeroes_whole_samples_and_rescales():
    x = torch.ones(256, 2, 3, 3)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    torch.manual_seed(0)
    y = drop_path(x, 0.5, training=True)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)


def test_gsta_block_init():
    block = GSTABlock(32, mlp_ratio=8.0)
    expand = block.mlp.body[0]  # 1x1, 32 -> 256: fan_out = 256
    assert expand.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    assert torch.all(expand.bias == 0)
    assert torch.all(block.layer_scale1 == 1e-2) and torch.all(block.layer_scale2 == 1e-2)


@pytest.mark.parametrize(("num_layers", "factor"), [(1, 1), (2, 2), (3, 2), (4, 4)])
def test_spatial_encoder_decoder_shapes(num_layers, factor):
    encoder, decoder = SpatialEncoder(2, 8, num_layers), SpatialDecoder(8, 2, num_layers)
    latent, skip = encoder(torch.rand(3, 2, 16, 16))
    assert latent.shape == (3, 8, 16 // factor, 16 // factor)
    assert skip.shape == (3, 8, 16, 16)
    assert decoder(latent, skip).shape == (3, 2, 16, 16)


def test_incepu_translator_supports_different_in_and_out_widths():
    translator = IncepUTranslator(24, 16, 40, depth=3)
    assert translator(torch.rand(2, 24, 8, 8)).shape == (2, 40, 8, 8)


@pytest.mark.parametrize(
    ("translator", "rollout", "in_frames", "out_frames"),
    [
        ("incepu", "direct", 5, 20),
        ("incepu", "iterative", 5, 20),
        ("incepu", "iterative", 4, 6),
        ("gsta", "direct", 5, 20),
        ("gsta", "iterative", 4, 6),
        ("gsta", "direct", 4, 4),
    ],
)
def test_forward_shape(translator, rollout, in_frames, out_frames):
    model = tiny(translator, rollout, in_frames, out_frames)
    y = model(torch.rand(2, in_frames, 1, 16, 16))
    assert y.shape == (2, out_frames, 1, 16, 16)
    assert y.dtype == torch.float32


@pytest.mark.parametrize("translator", ["incepu", "gsta"])
@pytest.mark.parametrize("rollout", ["direct", "iterative"])
def test_backward_reaches_every_parameter(translator, rollout):
    model = tiny(translator, rollout, in_frames=4, out_frames=6).train()
    model(torch.rand(2, 4, 1, 16, 16)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("translator", ["incepu", "gsta"])
def test_iterative_rollout_feeds_predictions_back(translator):
    iterative = tiny(translator, "iterative", in_frames=4, out_frames=6).eval()
    one_pass = tiny(translator, "direct", in_frames=4, out_frames=4).eval()
    one_pass.load_state_dict(iterative.state_dict())
    encoder_inputs = []
    iterative.encoder.register_forward_hook(lambda _m, args, _out: encoder_inputs.append(args[0]))
    x = torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        y = iterative(x)
        first = one_pass(x)
        second = one_pass(first)
    assert len(encoder_inputs) == 2
    torch.testing.assert_close(encoder_inputs[1], first.reshape(8, 1, 16, 16))
    torch.testing.assert_close(y, torch.cat([first, second], dim=1)[:, :6])


def test_iterative_gradients_flow_through_all_passes():
    model = tiny("incepu", "iterative", in_frames=4, out_frames=6)
    x = torch.rand(1, 4, 1, 16, 16, requires_grad=True)
    model(x)[:, 4:].sum().backward()  # frames 5-6 depend on x only through the first pass
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_skips_are_frame_aligned_or_taken_from_the_last_observation():
    skip = torch.rand(2, 4, 8, 16, 16)
    assert torch.equal(SimVP._skip_per_output_frame(skip, 4), skip)
    repeated = SimVP._skip_per_output_frame(skip, 6)
    assert repeated.shape == (2, 6, 8, 16, 16)
    assert torch.equal(repeated, skip[:, -1:].expand(-1, 6, -1, -1, -1))


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((1, 5, 1, 15, 16), "divisible by 2"),
        ((1, 4, 1, 16, 16), "5 frames|4 frames"),
        ((1, 5, 2, 16, 16), "channels"),
        ((5, 1, 16, 16), r"\(B, T, C, H, W\)"),
    ],
)
def test_bad_input_shapes_raise(shape, match):
    with pytest.raises(ValueError, match=match):
        tiny()(torch.rand(shape))


def test_downsampling_factor_follows_n_s():
    model = tiny(N_S=4)
    assert model.downsample_factor == 4
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.rand(1, 5, 1, 18, 18))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(translator="convlstm"), "translator must be"),
        (dict(rollout="sliding"), "rollout must be"),
        (dict(in_frames=0), "in_frames must be >= 1"),
        (dict(N_T=1), "N_T must be >= 2"),
        (dict(drop_path=0.1), "only apply to translator='gsta'"),
        (dict(hid_S=4, rollout="iterative"), "divisible by groups=8"),
        (dict(hid_S=7), "even"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)


def test_gsta_drop_path_out_of_range_raises():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        tiny("gsta", drop_path=1.0)
