"""DilatedDepthwiseConv2d: the same convolution as nn.Conv2d, with a correct bf16 weight gradient on CPU in
channels-last layout, where PyTorch's own kernel returns a wrong one (the cause of RainDiff's bf16 NaN)."""

import pytest
import torch
from torch import nn

from nowcast_pl.layers.dilated_conv import DilatedDepthwiseConv2d


def _gradients(conv: nn.Module, x: torch.Tensor, *, channels_last: bool, bf16: bool):
    layout = torch.channels_last if channels_last else torch.contiguous_format
    conv = conv.to(memory_format=layout)
    conv.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = conv(x.to(memory_format=layout))
    weights = torch.linspace(-1, 1, y.numel()).view_as(y)
    (y.float() * weights).sum().backward()
    return y.detach().float(), conv.weight.grad.clone(), x.grad.clone()


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(("kernel", "dilation", "padding", "size"),
                         [(7, 3, 9, (20, 20)), (7, 3, 9, (16, 17)), (5, 2, 4, (13, 9)), (7, 3, 2, (24, 24))])
@pytest.mark.parametrize("channels_last", [False, True])
def test_same_parameters_output_gradients_and_layout_as_a_plain_depthwise_conv(kernel, dilation, padding, size,
                                                                                channels_last):
    torch.manual_seed(0)
    ours = DilatedDepthwiseConv2d(8, kernel, dilation=dilation, padding=padding)
    plain = nn.Conv2d(8, 8, kernel, padding=padding, dilation=dilation, groups=8)
    assert ours.same_size == (padding == dilation * (kernel // 2))  # else: PyTorch's kernel
    assert ours.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(ours.state_dict())
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 8, *size).contiguous(memory_format=layout)
    x_ours, x_plain = x.clone().requires_grad_(), x.clone().requires_grad_()
    y, y_plain = ours(x_ours), plain(x_plain)
    torch.testing.assert_close(y, y_plain, atol=1e-5, rtol=1e-5)
    assert y.is_contiguous(memory_format=layout)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_plain * g).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_plain.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.weight.grad, plain.weight.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.bias.grad, plain.bias.grad, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bf16_weight_gradient_matches_fp32_on_cpu(channels_last):
    torch.manual_seed(0)
    conv = DilatedDepthwiseConv2d(16, 7, dilation=3, padding=9)
    x = torch.randn(4, 16, 32, 32)
    y_ref, w_ref, x_ref = _gradients(conv, x, channels_last=False, bf16=False)
    y, w, gx = _gradients(conv, x, channels_last=channels_last, bf16=True)
    assert y.is_contiguous(memory_format=torch.contiguous_format) or channels_last
    assert _relative(y, y_ref) < 2e-2
    assert _relative(w, w_ref) < 2e-2  # PyTorch's channels-last bf16 kernel: ~1 or inf
    assert _relative(gx, x_ref) < 2e-2


def test_the_pytorch_kernel_it_works_around_is_still_wrong():
    """Tells when a PyTorch release fixes the kernel, so the work-around can go."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 7, padding=9, dilation=3, groups=16)
    x = torch.randn(4, 16, 32, 32)
    _, w_ref, _ = _gradients(conv, x, channels_last=False, bf16=False)
    _, w, _ = _gradients(conv, x, channels_last=True, bf16=True)
    if _relative(w, w_ref) < 2e-2:
        pytest.xfail(f"torch {torch.__version__} computes this gradient correctly: DilatedDepthwiseConv2d's "
                     "channels-first detour is no longer needed")
    assert not _relative(w, w_ref) < 2e-2
