"""RainDiff building blocks: Token-wise Attention, ConvGRU, TAU, context encoder, U-Net."""

import pytest
import torch
import torch.nn.functional as F

from nowcast_pl.models.raindiff.context_encoder import SpatioTemporalEncoder, map_in_groups
from nowcast_pl.models.raindiff.convgru import ConvGRUCell
from nowcast_pl.models.raindiff.temporal_attention import PreNormTemporalAttentionUnit, TemporalAttentionModule
from nowcast_pl.models.raindiff.tokenwise_attention import TokenwiseAttention, TokenwiseStage
from nowcast_pl.models.raindiff.unet import RainDiffUNet


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


def test_convgru_follows_the_gru_equations():
    torch.manual_seed(0)
    cell = ConvGRUCell(3, 4)
    x, h = torch.randn(2, 3, 5, 5), torch.randn(2, 4, 5, 5)
    r, z = torch.sigmoid(cell.gates(torch.cat([x, h], 1))).chunk(2, 1)
    c = torch.tanh(cell.candidate(torch.cat([x, r * h], 1)))
    assert torch.allclose(cell(x, h), (1 - z) * h + z * c, atol=1e-6)
    assert torch.equal(cell(x), cell(x, torch.zeros(2, 4, 5, 5)))


def test_tau_se_width_and_residual_shape():
    assert TemporalAttentionModule(64).excite[0].out_features == 16
    assert TemporalAttentionModule(512).excite[0].out_features == 16
    block = PreNormTemporalAttentionUnit(16)
    assert block(torch.randn(1, 16, 8, 8)).shape == (1, 16, 8, 8)


def _frame_by_frame(encoder: SpatioTemporalEncoder, frames: torch.Tensor, local_frame: int):
    """The encoder scanned one frame at a time through all levels (eq. 13)."""
    states = [None] * len(encoder.levels)
    local = None
    for j in range(frames.shape[1]):
        x = encoder.stem(frames[:, j])
        for i, level in enumerate(encoder.levels):
            states[i] = level.gru(level.resnet(x), states[i])
            x = level.downsample(states[i]) if level.downsample is not None else x
        if j == local_frame:
            local = list(states)
    return states, local


@pytest.mark.parametrize("post_attention", [False, True])
def test_context_encoder_level_by_level_scan_equals_frame_by_frame(post_attention):
    torch.manual_seed(0)
    encoder = SpatioTemporalEncoder(8, (1, 2, 2), post_attention=post_attention).eval()
    frames = torch.rand(2, 7, 1, 16, 16) * 2 - 1
    global_ctx, local_ctx = encoder(frames, local_frame=3)
    states, local = _frame_by_frame(encoder, frames, 3)
    if post_attention:
        states = [stage(s) for stage, s in zip(encoder.post_attention, states, strict=True)]
    assert [tuple(g.shape) for g in global_ctx] == [(2, 8, 16, 16), (2, 8, 8, 8), (2, 16, 4, 4)]
    for ours, reference in zip(global_ctx + local_ctx, states + local, strict=True):
        assert torch.allclose(ours, reference, atol=1e-5)
    assert not torch.allclose(global_ctx[0], local_ctx[0])


def test_map_in_groups_batches_frames_within_the_byte_budget():
    frames = [torch.randn(2, 3, 4, 4) for _ in range(7)]  # 384 bytes each
    batch_rows = []

    def record(x: torch.Tensor) -> torch.Tensor:
        batch_rows.append(x.shape[0])
        return x * 2 + x.sum(dim=(1, 2, 3), keepdim=True)

    outputs = map_in_groups(record, frames, group_bytes=3 * 384)
    assert batch_rows == [6, 6, 2]  # groups of 3, 3 and 1 frames of 2 rows
    for out, frame in zip(outputs, frames, strict=True):
        assert torch.equal(out, record(frame))
    assert [o.shape[0] for o in map_in_groups(record, frames, group_bytes=1)] == [2] * 7  # at least one frame


@pytest.mark.parametrize("checkpoint", [False, True])
def test_context_encoder_group_size_changes_neither_values_nor_gradients(checkpoint):
    torch.manual_seed(0)
    frames = torch.rand(2, 6, 1, 16, 16) * 2 - 1
    results = []
    for group_bytes in (1, 2**30):  # one frame per batch; all frames in one batch
        torch.manual_seed(1)
        encoder = SpatioTemporalEncoder(8, (1, 2, 2), group_bytes=group_bytes).train()
        global_ctx, local_ctx = encoder(frames, local_frame=2, checkpoint=checkpoint)
        loss = sum((c * torch.linspace(-1, 1, c.numel()).reshape(c.shape)).sum() for c in global_ctx + local_ctx)
        loss.backward()
        results.append((global_ctx + local_ctx, [p.grad for p in encoder.parameters()]))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for a, b in zip(outs_a + grads_a, outs_b + grads_b, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert all(g is not None and g.abs().sum() > 0 for g in grads_a)


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
