"""SimVP network: exact parameter counts, shapes, gradients, rollout and errors."""


import pytest
import torch

from nowcast_pl.models.simvp import SimVP

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
