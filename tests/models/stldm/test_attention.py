"""STLDM's attention layers: gain layer norm over time, patch-wise linear attention, frame attention."""

import torch

from nowcast_pl.models.stldm.attention import FrameAttention, GainLayerNorm, PatchLinearAttention


def test_gain_layer_norm_over_time_normalises_each_pixel_across_frames_in_any_layout():
    x = torch.randn(2, 6, 3, 4, 4) * 5 + 2
    y = GainLayerNorm(3, channel_dim=2, reduce_dim=1)(x)
    assert torch.allclose(y.mean(dim=1), torch.zeros(2, 3, 4, 4), atol=1e-5)
    assert torch.allclose(y.var(dim=1, unbiased=False), torch.ones(2, 3, 4, 4), atol=1e-3)
    norm = GainLayerNorm(3, channel_dim=2, reduce_dim=1)
    with torch.no_grad():
        norm.gain.copy_(torch.tensor([1.0, 2.0, -0.5]))
    # frames of a channels-last (B*T, C, H, W) map: the same values, the layout kept, the gain per channel
    laid_out = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 6))
    out = norm(laid_out)
    torch.testing.assert_close(out, y * norm.gain.view(1, 1, 3, 1, 1), atol=1e-6, rtol=1e-6)
    assert out.stride() == laid_out.stride()


def test_patch_attention_keeps_windows_independent_and_temporal_attention_has_no_time_positions():
    torch.manual_seed(0)
    attention, x = PatchLinearAttention(8, 4, heads=2, dim_head=4), torch.randn(1, 8, 8, 8)
    changed = x.clone()
    changed[..., :4, :4] += 1.0  # only the top-left window
    diff = (attention(changed) - attention(x)).abs().sum(dim=(0, 1))
    assert diff[:4, :4].min() > 0 and diff[4:, :].max() == 0 and diff[:, 4:].max() == 0
    temporal, frames = FrameAttention(8, heads=2, dim_head=4), torch.randn(1, 5, 8, 2, 2)
    order = torch.tensor([3, 0, 4, 1, 2])
    assert torch.allclose(temporal(frames[:, order]), temporal(frames)[:, order], atol=1e-6)


def test_patch_attention_matches_the_formula_per_window_and_in_frame_slices():
    """Eq. of :class:`PatchLinearAttention` evaluated window by window, against the batched layer run whole,
    in slices of one frame (``chunk_bytes`` tiny) and on a channels-last input."""
    torch.manual_seed(0)
    layer, x = PatchLinearAttention(6, 4, heads=2, dim_head=3), torch.randn(3, 6, 8, 12)
    qkv = layer.to_qkv(x)
    out = torch.empty(3, 6, 8, 12)
    for i in range(0, 8, 4):
        for j in range(0, 12, 4):
            window = qkv[..., i:i + 4, j:j + 4].reshape(3, 3, 2, 3, 16)            # (N, q/k/v, heads, d, n)
            q, k, v = window.softmax(dim=3)[:, 0], window.softmax(dim=4)[:, 1], window[:, 2]
            context = k @ v.transpose(-1, -2)                                       # (N, heads, d, e)
            out[..., i:i + 4, j:j + 4] = (context.transpose(-1, -2) @ q * 3 ** -0.5).reshape(3, 6, 4, 4)
    expected = layer.out_norm(layer.to_out(out))
    whole = layer(x)
    torch.testing.assert_close(whole, expected, atol=1e-5, rtol=0)
    layer.chunk_bytes = 1  # one frame at a time
    torch.testing.assert_close(layer(x), whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(layer(x.contiguous(memory_format=torch.channels_last)), whole, atol=1e-6, rtol=0)
