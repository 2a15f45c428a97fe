"""RainDiffTask: loss (eq. 8), segment loop, teacher forcing, context switch, sampling, sizes."""

import math
import pickle

import pytest
import torch

from nowcast_pl.models.raindiff.network import RainDiffNet, normalise
from nowcast_pl.models.raindiff.task import RainDiffTask

TINY = dict(dim=8, dim_mults=(1, 2), hid_S=8, hid_T=16, N_T=2, thresholds=[20.0], protocol="pysteps",
            sampling_steps=3)


def _task(in_frames=3, out_frames=7, **kwargs):
    torch.manual_seed(0)
    return RainDiffTask(in_frames=in_frames, out_frames=out_frames, **(TINY | kwargs))


def _batch(task, b=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.rand(b, task.in_frames, 1, size, size, generator=g)
    return inputs, torch.rand(b, task.out_frames, 1, size, size, generator=g)


class _Recorder:
    """Wraps the U-Net and records (previous_residual, context, segment) of every call."""

    def __init__(self, task):
        self.calls, self.forward = [], task.net.denoiser.forward
        task.net.denoiser.forward = self

    def __call__(self, x_t, t, previous_residual, context, segment, *, features):
        self.calls.append((previous_residual.clone(), features[0][0], int(segment[0])))
        return self.forward(x_t, t, previous_residual, context, segment, features=features)


def test_loss_on_a_fixed_batch_falls_well_below_its_start():
    task = _task().train()
    inputs, targets = _batch(task)
    t = torch.tensor([100, 700])
    noises = [torch.randn(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(m)) for m in range(3)]
    optimizer = torch.optim.Adam(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = task.loss_terms(inputs, targets, t, noises)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("local_context", [True, False])
def test_segment_loop_teacher_forcing_and_context_switch(local_context):
    task = _task(local_context=local_context).train()
    inputs, targets = _batch(task)
    recorder = _Recorder(task)
    terms = task.training_loss({"inputs": inputs, "targets": targets})
    assert math.isclose(terms["loss"].item(), 0.5 * terms["mean_mse"].item() + 0.5 * terms["diffusion"].item(),
                        rel_tol=1e-5)
    assert [segment for _, _, segment in recorder.calls] == [0, 1, 2]  # 7 frames in segments of 3, 3, 1
    with torch.no_grad():
        mean = task.net.predict_mean(inputs)
        global_ctx, local_ctx = task.net.encode(normalise(inputs), normalise(mean))
    residual = normalise(targets) - normalise(mean)[:, :7]
    assert torch.equal(recorder.calls[0][0], torch.zeros_like(recorder.calls[0][0]))
    for m in (1, 2):  # the ground-truth residual of the previous segment
        assert torch.allclose(recorder.calls[m][0], residual[:, 3 * (m - 1):3 * m], atol=1e-5)
    level0 = task.net.denoiser.downs[0]
    with torch.no_grad():
        local_features, global_features = (level0.context_features(c[0])[0] for c in (local_ctx, global_ctx))
    assert torch.allclose(recorder.calls[0][1], local_features if local_context else global_features, atol=1e-5)
    assert all(torch.allclose(call[1], global_features, atol=1e-5) for call in recorder.calls[1:])


def test_sampling_conditions_on_the_sampled_residual_and_truncates_the_last_segment():
    task = _task().eval()
    inputs, _ = _batch(task)
    recorder = _Recorder(task)
    with torch.no_grad():
        out = task.forecast_rows(inputs, [torch.Generator().manual_seed(i) for i in range(2)])
        mean_n = normalise(task.net.predict_mean(inputs))
    assert out.shape == (2, 7, 1, 16, 16)
    assert [segment for _, _, segment in recorder.calls] == [0] * 3 + [1] * 3 + [2] * 3
    sampled_residual = normalise(out[:, :3]) - mean_n[:, :3]
    assert torch.allclose(recorder.calls[3][0], sampled_residual, atol=1e-5)


def test_sampling_is_reproducible_per_row_and_seed():
    task = _task().eval()
    inputs, _ = _batch(task)
    with torch.no_grad():
        a = task.sample_members(inputs, members=2, generator=torch.Generator().manual_seed(5))
        b = task.sample_members(inputs, members=2, generator=torch.Generator().manual_seed(5))
        c = task.sample_members(inputs, members=2, generator=torch.Generator().manual_seed(6))
        rows = task.forecast_rows(inputs, [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
        alone = task.forecast_rows(inputs[1:], [torch.Generator().manual_seed(2)])
    assert a.shape == (2, 2, 7, 1, 16, 16) and torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[:, 0], a[:, 1])
    assert torch.allclose(rows[1:], alone, atol=1e-5)


@pytest.mark.parametrize("kwargs, expected, exact", [
    (dict(variant="released"), 74_581_254, False),
    (dict(variant="paper"), 74_581_254, False),
    (dict(tokenwise_attention=False, post_attention=False), 57_332_998, True),
])
def test_parameter_counts_at_the_paper_configs(kwargs, expected, exact):
    count = sum(p.numel() for p in RainDiffNet(in_frames=5, out_frames=20, **kwargs).parameters())
    assert count == expected if exact else abs(count - expected) / expected < 0.02


def test_every_parameter_of_the_paper_model_receives_a_gradient():
    torch.manual_seed(0)
    task = RainDiffTask(in_frames=5, out_frames=10, variant="released", thresholds=[20.0], protocol="pysteps").train()
    inputs, targets = torch.rand(1, 5, 1, 16, 16), torch.rand(1, 10, 1, 16, 16)
    task.training_loss({"inputs": inputs, "targets": targets})["loss"].backward()
    dead = [name for name, p in task.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_frame_size_the_unet_cannot_take_is_a_one_line_error():
    task = _task(dim_mults=(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"frame size 20x20 is not divisible by 8.*data.frame_size"):
        task.training_loss({"inputs": torch.rand(1, 3, 1, 20, 20), "targets": torch.rand(1, 7, 1, 20, 20)})


@pytest.mark.parametrize("parts", [True, ["denoiser"], ["mean", "encoder"]])
def test_activation_checkpointing_keeps_loss_gradients_and_batchnorm_statistics(parts):
    plain = _task().train()
    checkpointed = _task(activation_checkpointing=parts).train()
    assert checkpointed.checkpointed_parts == ({"mean", "encoder", "denoiser"} if parts is True else set(parts))
    checkpointed.load_state_dict(plain.state_dict())
    inputs, targets = _batch(plain)
    t, noises = torch.tensor([5, 600]), [torch.randn(2, 3, 1, 16, 16) for _ in range(3)]
    losses = [task.loss_terms(inputs, targets, t, noises)["loss"] for task in (plain, checkpointed)]
    for loss in losses:
        loss.backward()
    assert torch.equal(losses[0], losses[1])
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-7), name
    for (name, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # BatchNorm running statistics updated once


def test_activation_checkpointing_of_an_unknown_part_is_refused_by_name():
    with pytest.raises(ValueError, match=r"activation_checkpointing names unknown parts \['unet'\]; use true, false"):
        _task(activation_checkpointing=["denoiser", "unet"])
    assert _task(activation_checkpointing=False).checkpointed_parts == frozenset()


def test_compiled_unet_samples_the_same_forecast_and_is_not_saved():
    eager = _task().eval()
    compiled = _task(compile_denoiser=True).eval()
    compiled.compile_backend = "aot_eager"  # the compile path without inductor's C++ build (minutes on CI)
    compiled.load_state_dict(eager.state_dict())
    inputs, _ = _batch(eager)
    with torch.no_grad():
        forecasts = [task.forecast_rows(inputs, [torch.Generator().manual_seed(i) for i in range(2)])
                     for task in (eager, compiled)]
    assert compiled._compiled_unet is not None and eager._compiled_unet is None
    assert torch.allclose(forecasts[0], forecasts[1], atol=1e-5)
    assert set(compiled.state_dict()) == set(eager.state_dict())
    assert "compile_denoiser" not in compiled.hparams  # a run-time choice, never restored from a checkpoint
    assert pickle.loads(pickle.dumps(compiled))._compiled_unet is None
