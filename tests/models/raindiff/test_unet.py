"""RainDiff's U-Net: shapes, with and without token-wise attention, and the context enters."""

import pytest
import torch

from nowcast_pl.models.raindiff.unet import RainDiffUNet


@pytest.mark.parametrize("tokenwise", [True, False])
def test_unet_shapes_and_context_enters(tokenwise):
    torch.manual_seed(0)
    unet = RainDiffUNet(segment_frames=3, dim=8, dim_mults=(1, 2, 2), tokenwise_attention=tokenwise).eval()
    x = torch.randn(2, 3, 1, 16, 16)
    ctx = [torch.randn(2, 8, 16, 16), torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]
    t, seg = torch.tensor([3, 900]), torch.tensor([0, 1])
    out = unet(x, t, torch.zeros_like(x), ctx, seg)
    assert out.shape == x.shape
    assert not torch.allclose(out, unet(x, t, torch.zeros_like(x), [c + 1 for c in ctx], seg))
    assert type(unet.mid_attention).__name__ == ("TokenwiseStage" if tokenwise else "PreNormSelfAttention")
