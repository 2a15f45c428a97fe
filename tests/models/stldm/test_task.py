"""STLDMTask on a tiny network: losses and their terms, staged training, CFG, seeding and errors. Parity with
the released code itself is ``python -m benchmarks.parity --model stldm``."""

import pytest
import torch

from nowcast_pl.diffusion import ddim_sample, x0_denoiser
from nowcast_pl.models.stldm.network import STLDM
from nowcast_pl.models.stldm.task import STLDMTask, TrainingDraws
from tests.helpers.stldm import TINY, tiny_batch


def tiny_task(**overrides) -> STLDMTask:
    torch.manual_seed(0)
    return STLDMTask(in_frames=3, out_frames=4, **(TINY | overrides))


def fixed_draws(task: STLDMTask, batch: int, size: int = 16, keep: float = 1.0) -> TrainingDraws:
    generator = torch.Generator().manual_seed(2)
    latent = (task.net.vae.latent_channels, size // 4, size // 4)
    randn = lambda frames: torch.randn(batch, frames, *latent, generator=generator)  # noqa: E731
    return TrainingDraws(t=torch.arange(batch) * 7 % task.timesteps, keep=torch.full((batch,), keep),
                         noise_vae=randn(7), noise_in=randn(3), noise_out=randn(4), noise_diffusion=randn(4))


def test_training_step_has_every_term_and_every_parameter_gets_a_gradient():
    task = tiny_task()
    losses = task.training_loss(dict(zip(("inputs", "targets"), tiny_batch(), strict=True)))
    assert {"vae", "constraint", "diffusion", "prior", "loss"} == set(losses)
    terms = losses["vae"] + losses["constraint"] + losses["diffusion"] + losses["prior"]
    assert torch.allclose(losses["loss"], terms)
    task.loss_terms(*tiny_batch(), fixed_draws(task, 2))["loss"].backward()
    assert [n for n, p in task.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


def test_checkpointing_in_groups_keeps_loss_gradients_and_batchnorm_statistics():
    inputs, targets = tiny_batch()
    results = []
    for flags in (dict(checkpoint_vae=False, checkpoint_translator=False),
                  dict(checkpoint_vae=True, checkpoint_translator=True)):
        task = tiny_task(**flags).train()
        task.net.vae_chunk_bytes = 1  # checkpointed VAE: one frame per group
        loss = task.loss_terms(inputs, targets, fixed_draws(task, 2))["loss"]
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in task.named_parameters()}, task.state_dict()))
    (loss, grads, state), (loss_ckpt, grads_ckpt, state_ckpt) = results
    # Grouping frames changes float rounding only; counting BatchNorm updates twice would be far off.
    torch.testing.assert_close(loss_ckpt, loss, atol=1e-7, rtol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, atol=1e-5, rtol=1e-4,
                                   msg=lambda message, name=name: f"{name}: {message}")
    running = [k for k in state if "running_" in k or "num_batches_tracked" in k]
    assert any("translator" in k for k in running)
    for key in running:
        torch.testing.assert_close(state_ckpt[key], state[key], atol=1e-6, rtol=1e-5, msg=key)


def test_loss_terms_are_switchable_and_weighted():
    task, batch = tiny_task(), tiny_batch()
    reference = task.loss_terms(*batch, fixed_draws(task, 2))
    no_constraint = tiny_task(constraint_weight=0.0, prior_weight=3.0)
    terms = no_constraint.loss_terms(*batch, fixed_draws(no_constraint, 2))
    assert "constraint" not in terms
    for name in ("vae", "diffusion", "prior"):
        assert torch.allclose(terms[name], reference[name])
    assert torch.allclose(terms["loss"], terms["vae"] + terms["diffusion"] + 3.0 * terms["prior"])
    vae_only = tiny_task(constraint_weight=0.0, diffusion_weight=0.0, prior_weight=0.0)
    assert set(vae_only.loss_terms(*batch, fixed_draws(vae_only, 2))) == {"vae", "loss"}
    with pytest.raises(ValueError, match="constraint_weight must be >= 0"):
        tiny_task(constraint_weight=-1.0)


def test_dropped_condition_trains_the_unconditional_model_without_the_condition_path():
    task = tiny_task()
    task.loss_terms(*tiny_batch(), fixed_draws(task, 2, keep=0.0))["diffusion"].backward()
    assert all(p.grad is None for p in task.net.unet.cond_downs.parameters())
    assert all(p.grad is None for p in task.net.translator.parameters())


def moving_blobs(batch: int, frames: int, shift: int = 0, size: int = 16) -> torch.Tensor:
    """Gaussian blobs moving one pixel per frame: ``(batch, frames, 1, size, size)`` in [0, 1]."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blobs = [torch.exp(-((x - 4 - k - shift) ** 2 + (y - 6 - i) ** 2) / 8.0) for i in range(batch)
             for k in range(frames)]
    return torch.stack(blobs).reshape(batch, frames, 1, size, size)


def test_overfitting_a_small_batch_drives_the_constraint_and_diffusion_losses_down():
    task, batch = tiny_task(), (moving_blobs(2, 3), moving_blobs(2, 4, shift=3))
    optimizer = torch.optim.Adam(task.parameters(), lr=3e-3)
    evaluate = lambda: task.loss_terms(*batch, fixed_draws(task, 2))  # noqa: E731
    with torch.no_grad():
        before = {k: float(v) for k, v in evaluate().items()}
    for _ in range(40):
        optimizer.zero_grad()
        task.training_loss({"inputs": batch[0], "targets": batch[1]})["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        after = {k: float(v) for k, v in evaluate().items()}
    assert after["constraint"] < 0.4 * before["constraint"]
    assert after["diffusion"] < 0.7 * before["diffusion"]


@torch.no_grad()
def test_guidance_weight_zero_is_the_conditional_model():
    task = tiny_task(guidance_scale=0.0, sampling_steps=3).eval()
    inputs, _ = tiny_batch()
    x_T = torch.randn(2, 4, 8, 4, 4)
    sample, _ = task.sample_frames(inputs, None, x_T=x_T)
    cond = task.net.translate(task.net.encode(inputs)[0])[0]
    network = lambda x_t, t: task.net.denoise(x_t, t, cond)  # noqa: E731
    latents = ddim_sample(x0_denoiser(network, task.alphas_cumprod, "v"), x_T.shape, task.alphas_cumprod,
                          steps=3, x_T=x_T)
    assert torch.allclose(sample, task.net.decode(latents), atol=1e-6)
    task.sampling.guidance_scale = 1.0
    guided_batched = task.sample_frames(inputs, None, x_T=x_T)[0]
    assert not torch.allclose(sample, guided_batched, atol=1e-4)
    task.hparams.batched_guidance = False
    assert torch.allclose(guided_batched, task.sample_frames(inputs, None, x_T=x_T)[0], atol=1e-5)


@torch.no_grad()
def test_a_dropped_row_sees_zeros_at_every_level_like_no_condition():
    net = tiny_task().net.eval()
    z_t, t, cond = torch.randn(2, 4, 8, 4, 4), torch.tensor([5, 5]), torch.randn(2, 4, 8, 4, 4)
    mixed = net.denoise(z_t, t, cond, torch.tensor([1.0, 0.0]))
    assert torch.allclose(mixed[1], net.denoise(z_t[1:], t[1:], None)[0], atol=1e-5)
    assert torch.allclose(mixed[0], net.denoise(z_t[:1], t[:1], cond[:1])[0], atol=1e-5)


@torch.no_grad()
def test_sampling_is_reproducible_with_a_seed():
    task = tiny_task(sampling_steps=3).eval()
    inputs, _ = tiny_batch()
    first = task.sample_members(inputs, 2, torch.Generator().manual_seed(5))
    assert first.shape == (2, 2, 4, 1, 16, 16)
    assert torch.equal(first, task.sample_members(inputs, 2, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, task.sample_members(inputs, 2, torch.Generator().manual_seed(6)))
    assert not torch.equal(first[:, 0], first[:, 1])


@torch.no_grad()
@pytest.mark.parametrize("sample_first_estimate", [False, True])
def test_a_member_does_not_depend_on_the_rest_of_the_batch(sample_first_estimate):
    """What sharding windows over DDP ranks needs: row ``i`` is a function of its inputs and generator only."""
    task = tiny_task(sampling_steps=3, sample_first_estimate=sample_first_estimate).eval()
    inputs, _ = tiny_batch(batch=3)
    rows = task.forecast_rows(inputs, [torch.Generator().manual_seed(seed) for seed in (1, 2, 3)])
    alone = task.forecast_rows(inputs[1:2], [torch.Generator().manual_seed(2)])
    torch.testing.assert_close(alone, rows[1:2], atol=1e-5, rtol=0)
    assert not torch.allclose(rows[0], rows[1])


@torch.no_grad()
def test_first_estimate_is_deterministic_by_default_and_sampled_on_request():
    task = tiny_task(sampling_steps=2).eval()
    inputs, _ = tiny_batch()
    x_T = torch.randn(2, 4, 8, 4, 4)
    assert torch.equal(task.sample_frames(inputs, None, x_T=x_T)[1], task.sample_frames(inputs, None, x_T=x_T)[1])
    task.sample_first_estimate = True
    rows = [torch.Generator().manual_seed(i) for i in range(2)]
    other = [torch.Generator().manual_seed(i + 9) for i in range(2)]
    assert not torch.equal(task.sample_frames(inputs, rows)[1], task.sample_frames(inputs, other)[1])


def test_bad_frames_give_one_line_errors_naming_the_setting():
    task = tiny_task()
    with pytest.raises(ValueError, match=r"data.frame_size must be a multiple of 16"):
        task.training_loss({"inputs": torch.rand(1, 3, 1, 20, 20), "targets": torch.rand(1, 4, 1, 20, 20)})
    with pytest.raises(ValueError, match=r"6 frames where out_frames=4"):
        task.training_loss({"inputs": torch.rand(1, 3, 1, 16, 16), "targets": torch.rand(1, 6, 1, 16, 16)})
    with pytest.raises(ValueError, match=r"checkpoint has in_frames=5 but the config sets in_frames=3"):
        task.on_load_checkpoint({"hyper_parameters": {"in_frames": 5, "out_frames": 4}, "state_dict": {}})
    with pytest.raises(ValueError, match="patch_size must be a power of two"):
        STLDM(in_frames=3, out_frames=4, unet_mults=(1, 2, 4, 8), patch_size=4)


def test_staged_training_loads_the_named_pretrained_parts_only(tmp_path):
    from nowcast_pl.models.stldm.task import load_pretrained

    source, target = tiny_task(), tiny_task()
    for parameter in source.parameters():
        torch.nn.init.normal_(parameter)
    torch.save({"state_dict": source.state_dict()}, tmp_path / "stage1.ckpt")
    load_pretrained(target, tmp_path / "stage1.ckpt", ["net.vae", "net.translator"])
    for name in ("vae", "translator"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(source.net, name).state_dict().values(),
                                                      getattr(target.net, name).state_dict().values(), strict=True))
    assert not torch.equal(source.net.unet.time_mlp.net[1].weight, target.net.unet.time_mlp.net[1].weight)
    with pytest.raises(ValueError, match="has no weights for 'net.nothing'"):
        load_pretrained(target, tmp_path / "stage1.ckpt", ["net.nothing"])
    with pytest.raises(ValueError, match="pretrained_modules needs model.init_args.pretrained_ckpt"):
        tiny_task(pretrained_modules=["net.vae"])
