"""RainDiff and DiffCast: ours against the official code (``thaondc-mbzuai/RaindDiff``, ``DeminYu98/DiffCast``).

The official model is a SimVP backbone (the mean), a context network and a U-Net in a ``GaussianDiffusion``;
its state dict converts into ours with :func:`nowcast_pl.models.raindiff.convert.convert_state_dict` (variant
``released``). RainDiff's training loss is taken from the official repository's first commit (836f9ee, the
only one that publishes it; read with ``git show`` when the checkout has its history). DiffCast never
published a training loss; its loss is assembled from the official modules (backbone MSE, context scan,
``p_losses`` per segment) as its author describes it (DiffCast issues #1, #4, #5).
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

from benchmarks.harness import Comparison, config_sections, import_official, scripted_randomness
from benchmarks.pairs import Side, our_side

TRAINING_LOSS_COMMIT = "836f9ee"
SOURCE = {"raindiff": "raindiff.py", "diffcast": "diffcast.py"}


def official_modules(model: str, checkout: Path) -> tuple[ModuleType, ModuleType]:
    """(diffusion module, SimVP module) of the official checkout; RainDiff's from commit 836f9ee if present."""
    simvp = import_official(checkout, "models", "models.simvp.simvp_iter", needs=SOURCE[model])
    source = checkout / SOURCE[model]
    if model == "raindiff":
        shown = subprocess.run(["git", "-C", str(checkout), "show", f"{TRAINING_LOSS_COMMIT}:raindiff.py"],
                               capture_output=True, text=True)
        if shown.returncode == 0:
            source = Path(tempfile.mkdtemp()) / "raindiff_with_training.py"
            source.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location(f"official_{model}", source)
    diffusion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diffusion)
    return diffusion, simvp


def build_official(model: str, checkout: Path, *, in_frames: int, out_frames: int, size: int,
                   sampling_steps: int, seed: int | None = None) -> torch.nn.Module:
    """The official model (SimVP mean included) with its own random initialisation, seeded after the import."""
    diffusion, simvp = official_modules(model, checkout)
    if seed is not None:
        torch.manual_seed(seed)
    official = diffusion.get_model(T_in=in_frames, T_out=out_frames, sampling_timesteps=sampling_steps)
    official.load_backbone(simvp.get_model((1, size, size), in_frames, out_frames))
    return official


def redraw_scales(module: torch.nn.Module, seed: int) -> None:
    """Layer scales and norm gains ~ U(0.5, 1.5); BatchNorm running stats away from (0, 1), so every branch
    (including the attention branches that start at 1e-5) contributes to the outputs."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if "layer_scale" in name or name.endswith(".g"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))


def converted_task(model: str, official: torch.nn.Module, *, in_frames: int, out_frames: int,
                   sampling_steps: int):
    """Our task (variant ``released``) holding the official weights."""
    from nowcast_pl.models.raindiff.convert import convert_state_dict  # noqa: PLC0415
    from nowcast_pl.models.raindiff.task import RainDiffTask  # noqa: PLC0415

    raindiff = model == "raindiff"
    task = RainDiffTask(in_frames=in_frames, out_frames=out_frames, variant="released",
                        tokenwise_attention=raindiff, post_attention=raindiff, sampler="ddim",
                        sampling_steps=sampling_steps, thresholds=[20.0], protocol="pysteps")
    task.net.load_state_dict(convert_state_dict(official.state_dict(), task.net.state_dict(), model))
    return task


def official_loss(official, inputs, targets, t, noises) -> torch.Tensor:
    """RainDiff: the official ``_forward`` (836f9ee) with its draws replaying ``t`` and ``noises``.
    DiffCast: the same algorithm assembled from the official modules (no published training code)."""
    if hasattr(official, "_forward"):
        with scripted_randomness(noises, randn_from_queue=True, randint=t):
            return official._forward(inputs, targets)
    mean, mean_loss = official.backbone_net.predict(inputs, frames_gt=targets, compute_loss=True)
    inputs_n, targets_n, mean_n = (official.normalize(x) for x in (inputs, targets, mean))
    global_ctx, local_ctx = official.ctx_net.scan_ctx(torch.cat((inputs_n, mean_n), dim=1))
    s, losses = inputs.shape[1], []
    for m, noise in enumerate(noises):
        residual = (targets_n - mean_n)[:, m * s:(m + 1) * s]
        cond = (targets_n - mean_n)[:, (m - 1) * s:m * s] if m else torch.zeros_like(residual)
        x_t = official.q_sample(residual, t, noise=noise) if hasattr(official, "q_sample") else (
            official.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1, 1) * residual
            + official.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1, 1) * noise)
        out = official.model(x_t, t, cond=cond, ctx=global_ctx if m else local_ctx, idx=torch.full_like(t, m))
        per_sample = ((out - official.predict_v(residual, t, noise)) ** 2).flatten(1).mean(1)
        losses.append((per_sample * official.loss_weight[t]).mean())
    return 0.5 * mean_loss + 0.5 * torch.stack(losses).mean()


def official_sample(official, inputs: torch.Tensor, out_frames: int, x_T: Sequence[torch.Tensor]) -> torch.Tensor:
    """The official DDIM forecast (eta 0, x0 clipped) from ``x_T[m]`` for segment ``m``."""
    steps = official.sampling_timesteps
    draws = [noise for start in x_T for noise in [start] + [torch.zeros_like(start)] * (steps - 1)]
    with torch.no_grad(), scripted_randomness(draws, randn_from_queue=True, randint=torch.zeros(1)):
        frames, _, _ = official.sample(inputs, out_frames)
    return frames


# ----- parity ----------------------------------------------------------------------------------------------


def compare_networks(comparison: Comparison, official, net, inputs: torch.Tensor, seed: int) -> None:
    """The SimVP mean, both encoder contexts and one U-Net call (segment 1, t = 617)."""
    from nowcast_pl.models.raindiff.network import normalise  # noqa: PLC0415

    with torch.no_grad():
        mean_official, _ = official.backbone_net.predict(inputs)
        comparison.add("mean", net.predict_mean(inputs)[:, : net.out_frames], mean_official)
        frames = torch.cat([normalise(inputs), normalise(mean_official)], dim=1)
        official_ctx = official.ctx_net.scan_ctx(frames)
        ours_ctx = net.context_encoder(frames, local_frame=net.in_frames)
        comparison.add("context_global", ours_ctx[0], official_ctx[0])
        comparison.add("context_local", ours_ctx[1], official_ctx[1])
        generator = torch.Generator().manual_seed(seed + 2)
        x_t = torch.randn(inputs.shape, generator=generator)
        cond = torch.randn(inputs.shape, generator=generator)
        t = torch.tensor([617] * inputs.shape[0])
        segment = torch.full_like(t, 1)
        comparison.add("unet_call", net.denoiser(x_t, t, cond, ours_ctx[0], segment),
                       official.model(x_t, t, cond=cond, ctx=official_ctx[0], idx=segment))


def compare_loss(comparison: Comparison, official, task, inputs, targets, seed: int) -> None:
    """The training loss at fixed timestep and noise, train mode (BatchNorm batch statistics), no graph."""
    generator = torch.Generator().manual_seed(seed + 3)
    t = torch.randint(0, 1000, (inputs.shape[0],), generator=generator)
    noises = [torch.randn(inputs.shape, generator=generator) for _ in range(task.net.num_segments)]
    official.train()
    task.train()
    with torch.no_grad():
        comparison.add("training_loss", task.loss_terms(inputs, targets, t, noises)["loss"],
                       official_loss(official, inputs, targets, t, noises))
    official.eval()
    task.eval()


def compare_sample(comparison: Comparison, official, task, inputs, seed: int) -> None:
    """A DDIM forecast (eta 0, x0 clipped, the official step count) from the same noise per segment."""
    generator = torch.Generator().manual_seed(seed + 4)
    draws = [torch.randn(inputs.shape, generator=generator)
             for _ in range(task.net.num_segments * official.sampling_timesteps)]
    x_T = draws[::official.sampling_timesteps]
    with torch.no_grad(), scripted_randomness(draws, randn_from_queue=True, randint=torch.zeros(1)):
        official_frames, _, _ = official.sample(inputs, task.out_frames)
    with torch.no_grad():
        ours = task.forecast_rows(inputs, [torch.Generator() for _ in range(inputs.shape[0])], x_T=x_T)
    comparison.add(f"ddim{official.sampling_timesteps}_sample", ours.clamp(0, 1), official_frames)


def parity(model: str, checkout: Path, *, size: int = 128, seed: int = 0, batch: int = 1, in_frames: int = 5,
           out_frames: int = 20, sample_steps: int = 5) -> dict:
    """Largest differences of ours (converted weights) against the official model, fp32 on CPU."""
    official = build_official(model, checkout, in_frames=in_frames, out_frames=out_frames, size=size,
                              sampling_steps=sample_steps, seed=seed)
    redraw_scales(official, seed)
    official.eval()
    task = converted_task(model, official, in_frames=in_frames, out_frames=out_frames,
                          sampling_steps=sample_steps).eval()
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand((batch, in_frames, 1, size, size), generator=generator)
    targets = torch.rand((batch, out_frames, 1, size, size), generator=generator)
    comparison = Comparison()
    compare_networks(comparison, official, task.net, inputs, seed)
    compare_loss(comparison, official, task, inputs, targets, seed)
    compare_sample(comparison, official, task, inputs, seed)
    source = f"{SOURCE[model]} of commit {TRAINING_LOSS_COMMIT}" if hasattr(official, "_forward") else SOURCE[model]
    setting = {"variant": "released", "official_source": source, "batch": batch,
               "frames": f"{in_frames}->{out_frames}", "size": size, "seed": seed,
               "params": {"ours": sum(p.numel() for p in task.parameters()),
                          "official": sum(p.numel() for p in official.parameters())}}
    return setting | comparison.result()


# ----- cost ------------------------------------------------------------------------------------------------


def _batch(in_frames: int, out_frames: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand((1, in_frames, 1, size, size), generator=generator),
            torch.rand((1, out_frames, 1, size, size), generator=generator))


def _segment_noise(segments: int, shape: Sequence[int]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(tuple(shape), generator=generator) for _ in range(segments)]


def ours(model: str, config: Path, overrides: Sequence[str] = ()) -> Side:
    """Our task of ``config`` (``overrides``: command-line style, e.g. ``--model.init_args.variant released``)."""
    from nowcast_pl.models.raindiff.task import RainDiffTask  # noqa: PLC0415

    init, data = config_sections(config, overrides)
    task = RainDiffTask(**init)
    inputs, targets = _batch(data["in_frames"], data["out_frames"], data.get("frame_size") or 128)
    x_T = _segment_noise(task.net.num_segments, inputs.shape)

    def forecast() -> torch.Tensor:
        with torch.no_grad():
            return task.forecast_rows(inputs, [torch.Generator().manual_seed(0)], x_T=x_T).clamp(0, 1)

    return our_side(task, inputs, targets, forecast)


def official(model: str, checkout: Path, config: Path, sample_steps: int | None) -> Side:
    """The official model at the frame counts and size of ``config``, DDIM with ``sample_steps`` steps (default:
    the config's ``sampling_steps``)."""
    init, data = config_sections(config)
    sample_steps = sample_steps or init.get("sampling_steps", 250)
    in_frames, out_frames, size = data["in_frames"], data["out_frames"], data.get("frame_size") or 128
    module = build_official(model, checkout, in_frames=in_frames, out_frames=out_frames, size=size,
                            sampling_steps=sample_steps)
    inputs, targets = _batch(in_frames, out_frames, size)
    segments = -(-out_frames // in_frames)
    x_T = _segment_noise(segments, inputs.shape)

    def loss() -> torch.Tensor:
        t = torch.randint(0, 1000, (1,))
        return official_loss(module, inputs, targets, t, [torch.randn(inputs.shape) for _ in range(segments)])

    def set_sampler(sampler: str, steps: int) -> None:
        if sampler != "ddim":
            raise ValueError(f"the official {model} code samples with DDIM only, not {sampler}")
        module.sampling_timesteps = steps

    return Side(module=module, loss=loss, forecast=lambda: official_sample(module, inputs, out_frames, x_T),
                set_sampler=set_sampler, sampler=("ddim", sample_steps))


def unet_calls(model: str, checkout: Path, config: Path, overrides: Sequence[str], rounds: int) -> dict:
    """One denoiser call of ours and of the official U-Net alternated ``rounds`` times in one process after an
    untimed call of each (``first_call_s``: ours, including any compile); the fastest and median of each.
    With ``compile_denoiser``, our uncompiled U-Net joins the rotation for ``compiled_to_eager_ratio``."""
    task = ours(model, config, overrides).module.eval()
    side = official(model, checkout, config, 1).module.eval()
    torch.manual_seed(0)
    size = config_sections(config)[1].get("frame_size") or 128
    x = torch.randn(1, task.in_frames, 1, size, size)
    inputs = torch.rand_like(x)
    with torch.no_grad():
        mean = side.backbone_net.predict(inputs)[0] * 2 - 1
        contexts = side.ctx_net.scan_ctx(torch.cat([inputs * 2 - 1, mean], dim=1))[0]
        features = task.net.segment_features(task.net.encode(inputs * 2 - 1, mean))
    t, index = torch.tensor([500]), torch.tensor([1])
    unet = task._sampling_unet()
    calls = {"official": lambda: side.model(x, t, cond=x, ctx=contexts, idx=index),
             "ours": lambda: task.net.denoise(x, t, x, features, 1, unet=unet)}
    if unet is not None:
        calls["ours_eager"] = lambda: task.net.denoise(x, t, x, features, 1)
    times: dict[str, list[float]] = {name: [] for name in calls}
    first: dict[str, float] = {}
    with torch.no_grad():
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            first[name] = time.perf_counter() - start
        for _ in range(rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {"rounds": rounds, "unet_call_s": best["ours"], "official_unet_call_s": best["official"],
              "unet_call_min_ratio_to_official": best["ours"] / best["official"],
              "unet_call_median_ratio_to_official": median["ours"] / median["official"],
              "first_call_s": first["ours"]}
    if unet is not None:
        with torch.no_grad():
            compiled_diff = float((calls["ours"]() - calls["ours_eager"]()).abs().max())
        result |= {"eager_unet_call_s": best["ours_eager"],
                   "compiled_to_eager_ratio": best["ours"] / best["ours_eager"],
                   "compiled_to_eager_median_ratio": median["ours"] / median["ours_eager"],
                   "compiled_max_abs_diff": compiled_diff}
    return result
