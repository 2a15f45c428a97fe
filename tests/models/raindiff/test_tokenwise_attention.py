"""RainDiff's Token-wise Attention (eqs. 9-12) and its stage."""

import pytest
import torch
import torch.nn.functional as F

from nowcast_pl.models.raindiff.tokenwise_attention import TokenwiseAttention, TokenwiseStage


def _released_reference(attn: TokenwiseAttention, x: torch.Tensor) -> torch.Tensor:
    """The released arithmetic written step by step, forming p (n x d) explicitly."""
    b, c, h, w = x.shape
    z = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
    q = F.normalize(attn.to_query(z), dim=-1)
    k = F.normalize(attn.to_key(z), dim=-1)
    a = F.normalize((q @ attn.weight_alpha[:, None]) * c ** -0.5, dim=1)
    q_g = torch.softmax((a * q).sum(1), dim=-1)
    p = q_g[:, None] * k
    beta = F.normalize((p @ attn.weight_beta[:, None]) * c ** -0.5, dim=1)
    k_g = torch.softmax((beta * p).sum(1), dim=-1)
    out = attn.out(k_g[:, None] * k + q)
    return out.reshape(b, h, w, c).permute(0, 3, 1, 2)


def _paper_reference(attn: TokenwiseAttention, x: torch.Tensor) -> torch.Tensor:
    """Eqs. 9-12 written step by step."""
    b, c, h, w = x.shape
    z = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
    q, k, v = attn.to_query(z), attn.to_key(z), attn.to_value(z)
    alpha = torch.softmax(q @ attn.weight_alpha[:, None] / c ** 0.5, dim=1)
    q_g = (alpha * q).sum(1)
    p = q_g[:, None] * k
    beta = torch.softmax(k @ attn.weight_beta[:, None] / c ** 0.5, dim=1)
    k_g = (beta * p).sum(1)
    out = attn.query_out(F.normalize(q, dim=-1)) + attn.value_out(v * k_g[:, None])
    return out.reshape(b, h, w, c).permute(0, 3, 1, 2)


@pytest.mark.parametrize("variant, reference", [("released", _released_reference), ("paper", _paper_reference)])
def test_tokenwise_attention_matches_its_equations(variant, reference):
    torch.manual_seed(0)
    attn = TokenwiseAttention(16, variant)
    x = torch.randn(2, 16, 6, 5)
    assert torch.allclose(attn(x), reference(attn, x), atol=1e-6)


@pytest.mark.parametrize("variant", ["released", "paper"])
def test_tokenwise_attention_is_permutation_equivariant_and_every_parameter_learns(variant):
    torch.manual_seed(0)
    attn = TokenwiseAttention(8, variant)
    x = torch.randn(1, 8, 4, 4)
    perm = torch.randperm(16)
    shuffled = x.flatten(2)[:, :, perm].reshape(1, 8, 4, 4)
    assert torch.allclose(attn(shuffled).flatten(2), attn(x).flatten(2)[:, :, perm], atol=1e-6)
    attn(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in attn.parameters())
    assert ("to_value" in dict(attn.named_children())) == (variant == "paper")


def test_unknown_variant_is_one_line_error():
    with pytest.raises(ValueError, match="variant must be 'paper' or 'released', got 'fast'"):
        TokenwiseStage(8, variant="fast")


def test_tokenwise_stage_keeps_shape_and_starts_near_its_conv_block():
    stage = TokenwiseStage(16, variant="released").eval()
    x = torch.randn(2, 16, 8, 8)
    assert stage(x).shape == x.shape
    assert stage.encoder.layer_scale_attn.eq(1e-5).all() and stage.conv_ffn.layer_scale.eq(1.0).all()
