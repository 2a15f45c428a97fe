"""Shared U-Net blocks (``nowcast_pl.layers.unet``): embedding values, shapes and the scale/shift path."""

import math

import torch

from nowcast_pl.layers.unet import EmbeddingMLP, ResnetBlock, SinusoidalEmbedding


def test_sinusoidal_embedding_matches_formula():
    emb = SinusoidalEmbedding(8)(torch.tensor([0.0, 3.0]))
    freqs = [math.exp(-i * math.log(10000.0) / 3) for i in range(4)]
    expected = [[math.sin(3.0 * f) for f in freqs] + [math.cos(3.0 * f) for f in freqs]]
    assert torch.allclose(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert torch.allclose(emb[1], torch.tensor(expected[0]), atol=1e-6)


def test_resnet_block_shapes_and_embedding_changes_output():
    torch.manual_seed(0)
    block = ResnetBlock(16, 32, emb_dim=24)
    x, emb = torch.randn(2, 16, 8, 8), torch.randn(2, 24)
    out = block(x, emb)
    assert out.shape == (2, 32, 8, 8)
    assert not torch.allclose(out, block(x, torch.zeros_like(emb)))
    assert EmbeddingMLP(64, 256)(torch.tensor([0, 49])).shape == (2, 256)


def test_resnet_block_without_embedding_is_identity_skip_when_widths_match():
    block = ResnetBlock(8, 8)
    assert isinstance(block.skip, torch.nn.Identity)
    assert block(torch.randn(1, 8, 4, 4)).shape == (1, 8, 4, 4)
