"""RainDiff's spatio-temporal context encoder: level-by-level scan, frame groups within a byte budget."""

import pytest
import torch

from nowcast_pl.models.raindiff.context_encoder import SpatioTemporalEncoder, map_in_groups


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
