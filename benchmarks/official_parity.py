"""Numerical parity of our RainDiff / DiffCast with the official code (imported at run time, never vendored).

    python benchmarks/official_parity.py --model raindiff --official-repo /path/to/RaindDiff
    python benchmarks/official_parity.py --model diffcast --official-repo /path/to/DiffCast

Builds the official model (SimVP backbone + context net + U-Net) with random weights, converts its state
dict into ours with :func:`nowcast_pl.models.raindiff.convert.convert_state_dict` (variant ``released``), and
prints one JSON object with the largest absolute difference of: the SimVP mean, the encoder contexts, one
U-Net call, the training loss at fixed noise and timestep, and a 5-step DDIM sample at fixed noise (fp32,
CPU, 5 -> 20 frames by default). The random weights are the official initialisation with the layer scales,
norm gains and BatchNorm statistics re-drawn, so every branch (including the attention branches that start
at 1e-5) contributes to the outputs.

RainDiff's training loss is taken from the official repository's first commit (836f9ee, the only one that
publishes it; the script reads it with ``git show`` when the checkout has its history). DiffCast never
published a training loss; its loss is assembled from the official modules (backbone MSE, context scan,
``p_losses`` per segment) in the way its author describes (DiffCast issues #1, #4, #5).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import torch

from nowcast_pl.models.raindiff.convert import convert_state_dict
from nowcast_pl.models.raindiff.network import RainDiffNet, normalise
from nowcast_pl.models.raindiff.task import RainDiffTask

TRAINING_LOSS_COMMIT = "836f9ee"
MAGNITUDES = ("unet_output_abs_max", "training_loss_value")  # reported for scale, not differences


def import_official(model: str, repo: Path) -> tuple[ModuleType, ModuleType]:
    """(diffusion module, SimVP module) of the official checkout at ``repo``."""
    sys.path.insert(0, str(repo))
    source = repo / ("raindiff.py" if model == "raindiff" else "diffcast.py")
    if model == "raindiff":
        shown = subprocess.run(["git", "-C", str(repo), "show", f"{TRAINING_LOSS_COMMIT}:raindiff.py"],
                               capture_output=True, text=True)
        if shown.returncode == 0:
            source = Path(tempfile.mkdtemp()) / "raindiff_with_training.py"
            source.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location(f"official_{model}", source)
    diffusion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diffusion)
    from models.simvp import simvp_iter  # noqa: PLC0415  (the official checkout's package)
    return diffusion, simvp_iter


def build_official(model: str, repo: Path, *, in_frames: int, out_frames: int, size: int, seed: int):
    diffusion_module, simvp_module = import_official(model, repo)
    torch.manual_seed(seed)
    official = diffusion_module.get_model(T_in=in_frames, T_out=out_frames, sampling_timesteps=5)
    official.load_backbone(simvp_module.get_model((1, size, size), in_frames, out_frames))
    redraw_scales(official, seed)
    return official.eval()


def redraw_scales(module: torch.nn.Module, seed: int) -> None:
    """Layer scales and norm gains ~ U(0.5, 1.5); BatchNorm running stats away from (0, 1)."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if "layer_scale" in name or name.endswith(".g"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith("running_mean"):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))


def build_ours(model: str, official: torch.nn.Module, *, in_frames: int, out_frames: int) -> RainDiffTask:
    raindiff = model == "raindiff"
    task = RainDiffTask(in_frames=in_frames, out_frames=out_frames, variant="released",
                        tokenwise_attention=raindiff, post_attention=raindiff, sampler="ddim", sampling_steps=5,
                        thresholds=[20.0], protocol="pysteps")
    task.net.load_state_dict(convert_state_dict(official.state_dict(), task.net.state_dict(), model))
    return task.eval()


def max_diff(a, b) -> float:
    if isinstance(a, (list, tuple)):
        return max(max_diff(x, y) for x, y in zip(a, b, strict=True))
    return float((a.detach() - b.detach()).abs().max())


def compare_networks(official, net: RainDiffNet, inputs: torch.Tensor, seed: int) -> dict[str, float]:
    t_in = net.in_frames
    with torch.no_grad():
        mean_official, _ = official.backbone_net.predict(inputs)
        mean_ours = net.predict_mean(inputs)[:, : net.out_frames]
        frames = torch.cat([normalise(inputs), normalise(mean_official)], dim=1)
        official_ctx = official.ctx_net.scan_ctx(frames)
        ours_ctx = net.context_encoder(frames, local_frame=t_in)
        generator = torch.Generator().manual_seed(seed + 2)
        x_t = torch.randn(inputs.shape, generator=generator)
        cond = torch.randn(inputs.shape, generator=generator)
        t = torch.tensor([617] * inputs.shape[0])
        segment = 1
        unet_official = official.model(x_t, t, cond=cond, ctx=official_ctx[0],
                                       idx=torch.full_like(t, segment))
        unet_ours = net.denoiser(x_t, t, cond, ours_ctx[0], torch.full_like(t, segment))
    return {"mean": max_diff(mean_official, mean_ours),
            "context_global": max_diff(official_ctx[0], ours_ctx[0]),
            "context_local": max_diff(official_ctx[1], ours_ctx[1]),
            "unet_call": max_diff(unet_official, unet_ours),
            "unet_output_abs_max": float(unet_official.abs().max())}


def official_loss(model: str, official, inputs, targets, t, noises) -> torch.Tensor:
    """RainDiff: the official ``_forward`` (836f9ee) with its RNG replaying ``t`` and ``noises``.
    DiffCast: the same algorithm assembled from the official modules (no published training code)."""
    if hasattr(official, "_forward"):
        with _replayed_randomness(t, noises):
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


class _replayed_randomness:
    """Make ``torch.randint`` return ``t`` and ``torch.randn`` / ``torch.randn_like`` return ``noises`` in order."""

    def __init__(self, t: torch.Tensor, noises: list[torch.Tensor]) -> None:
        self.t, self.noises = t, list(noises)

    def __enter__(self):
        self.saved = torch.randint, torch.randn, torch.randn_like
        torch.randint = lambda *args, **kwargs: self.t.clone()
        torch.randn = torch.randn_like = lambda *args, **kwargs: self.noises.pop(0).clone()
        return self

    def __exit__(self, *exc) -> None:
        torch.randint, torch.randn, torch.randn_like = self.saved


def compare_loss(model: str, official, task: RainDiffTask, inputs, targets, seed: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed + 3)
    t = torch.randint(0, 1000, (inputs.shape[0],), generator=generator)
    noises = [torch.randn(inputs.shape, generator=generator) for _ in range(task.net.num_segments)]
    official.train()
    task.train()
    with torch.no_grad():  # train mode (BatchNorm batch statistics), no graph: the value is compared
        loss_official = official_loss(model, official, inputs, targets, t, noises)
        loss_ours = task.loss_terms(inputs, targets, t, noises)["loss"]
    official.eval()
    task.eval()
    return {"training_loss": max_diff(loss_official, loss_ours), "training_loss_value": float(loss_official)}


def compare_sample(official, task: RainDiffTask, inputs, seed: int) -> dict[str, float]:
    """5-step DDIM (eta 0, x0 clipped) from the same starting noise per segment."""
    steps = official.sampling_timesteps
    shape = inputs.shape
    generator = torch.Generator().manual_seed(seed + 4)
    draws = [torch.randn(shape, generator=generator) for _ in range(task.net.num_segments * steps)]
    x_T = draws[::steps]
    with torch.no_grad(), _replayed_randomness(torch.zeros(1), draws):
        official_frames, _, _ = official.sample(inputs, task.out_frames)
    with torch.no_grad():
        ours = task.forecast_rows(inputs, [torch.Generator() for _ in range(inputs.shape[0])], x_T=x_T).clamp(0, 1)
    return {"ddim5_sample": max_diff(official_frames, ours)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("raindiff", "diffcast"), required=True)
    parser.add_argument("--official-repo", type=Path, required=True,
                        help="checkout of thaondc-mbzuai/RaindDiff or DeminYu98/DiffCast")
    parser.add_argument("--in-frames", type=int, default=5)
    parser.add_argument("--out-frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    official = build_official(args.model, args.official_repo.resolve(), in_frames=args.in_frames,
                              out_frames=args.out_frames, size=args.size, seed=args.seed)
    task = build_ours(args.model, official, in_frames=args.in_frames, out_frames=args.out_frames)
    generator = torch.Generator().manual_seed(args.seed)
    inputs = torch.rand((args.batch, args.in_frames, 1, args.size, args.size), generator=generator)
    targets = torch.rand((args.batch, args.out_frames, 1, args.size, args.size), generator=generator)
    diffs = compare_networks(official, task.net, inputs, args.seed)
    diffs |= compare_loss(args.model, official, task, inputs, targets, args.seed)
    diffs |= compare_sample(official, task, inputs, args.seed)
    result = {"model": args.model, "variant": "released", "dtype": "float32", "device": "cpu",
              "batch": args.batch, "frames": f"{args.in_frames}->{args.out_frames}", "size": args.size,
              "max_abs_diff": diffs, "tolerance": 1e-4,
              "pass": all(v <= 1e-4 for k, v in diffs.items() if k not in MAGNITUDES),
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                         f"torch {torch.__version__}"}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    from stldm_dispatch import stldm_argv  # noqa: PLC0415  (benchmarks/ is on sys.path when run as a script)

    if (stldm_args := stldm_argv(sys.argv[1:])) is not None:
        from parity_stldm import main as stldm_main  # noqa: PLC0415  (benchmarks/ is on sys.path when run as a script)

        stldm_main(stldm_args)
    else:
        main()
