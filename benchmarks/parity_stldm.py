"""Numerical parity of our STLDM with the released code (``sqfoo/stldm_official``), fp32 on CPU.

Builds the official model with random weights (seeded), converts its state dict with
:mod:`nowcast_pl.models.stldm.convert`, and prints one JSON object with the largest absolute differences of: VAE
encode/decode, Translator mean, one U-Net call with and without the condition, each training loss term at
fixed noise / timestep / CFG drop (conditional and unconditional step; stochastic depth set to 0 on both
sides, the one random draw that cannot be shared), and a 5-step guided DDIM sample (w = 1) at fixed noise
with ``sample_first_estimate`` on, as the released code samples the first estimate. It also checks the
Hugging Face layout: the released ``stldm_hf.GaussianDiffusion`` takes the official state dict unchanged, and
the ``model.safetensors`` its ``save_pretrained`` writes converts to the same weights
(``hf_safetensors_weights``, the largest difference of any tensor; 0 when they are identical).

The official code is imported at run time from ``--official-repo`` (never vendored); its
``stldm/__init__.py`` needs huggingface_hub, so the package is registered bare. Needs ``einops``.

    python benchmarks/parity_stldm.py --official-repo /path/to/stldm_official [--dataset hko7|sevir|meteonet]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path

import torch

FRAMES = {"hko7": (5, 20), "meteonet": (5, 20), "sevir": (13, 12)}
CONFIG_NAMES = {"hko7": "STLDM_HKO", "meteonet": "STLDM_METEO", "sevir": "STLDM_SEVIR"}
TOLERANCE = 1e-4


def import_official(repo: Path):
    """The official ``stldm.stldm`` and ``stldm.config`` modules, imported from a checkout."""
    if not (repo / "stldm" / "stldm.py").is_file():
        raise SystemExit(f"--official-repo {repo} is not a checkout of sqfoo/stldm_official (no stldm/stldm.py)")
    package = types.ModuleType("stldm")
    package.__path__ = [str(repo / "stldm")]
    sys.modules["stldm"] = package
    import stldm.config as config  # noqa: PLC0415
    import stldm.stldm as model  # noqa: PLC0415
    return model, config


@contextlib.contextmanager
def scripted_randomness(randn_like: list[torch.Tensor], *, randn: torch.Tensor | None = None,
                        randint: torch.Tensor | None = None, uniform: float | None = None) -> Iterator[None]:
    """Make the official code's ``torch.randn_like`` / ``randn`` / ``randint`` / ``random.random`` return
    the given values (``randn_like`` in call order, zeros once the list is used up)."""
    queue = list(randn_like)
    saved = torch.randn_like, torch.randn, torch.randint, random.random

    def next_like(x, *args, **kwargs):
        return queue.pop(0).reshape(x.shape).clone() if queue else torch.zeros_like(x)

    torch.randn_like = next_like
    if randn is not None:
        torch.randn = lambda *a, **k: randn.clone()
    if randint is not None:
        torch.randint = lambda *a, **k: randint.clone()
    if uniform is not None:
        random.random = lambda: uniform
    try:
        yield
    finally:
        torch.randn_like, torch.randn, torch.randint, random.random = saved


def zero_stochastic_depth(official: torch.nn.Module, ours: torch.nn.Module) -> None:
    for module in official.modules():
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0
    for module in ours.modules():
        if hasattr(module, "rate") and type(module).__name__ == "DropPath":
            module.rate = 0.0


def build(dataset: str, repo: Path, seed: int):
    """Official model with random weights and our STLDMTask holding the converted weights."""
    from nowcast_pl.models.stldm.convert import check_schedule, convert_state_dict
    from nowcast_pl.models.stldm.task import STLDMTask

    official_model, official_config = import_official(repo)
    torch.manual_seed(seed)
    official = official_model.model_setup(getattr(official_config, CONFIG_NAMES[dataset]), cfg_str=1.0)
    in_frames, out_frames = FRAMES[dataset]
    ours = STLDMTask(in_frames=in_frames, out_frames=out_frames, thresholds=[0.5], protocol="stldm")
    state = official.state_dict()
    check_schedule(state, ours.alphas_cumprod)
    ours.net.load_state_dict(convert_state_dict(state, ours.net.state_dict()))
    return official, ours


def hugging_face_layout(dataset: str, repo: Path, official, ours) -> dict[str, float]:
    """Largest difference between our weights and those converted from the Hugging Face release's file format.

    The released Hugging Face class is built with the same configuration, loads the official state dict
    strictly (so its keys are the ``*.pt`` keys) and writes ``model.safetensors`` with ``save_pretrained``.
    """
    from nowcast_pl.models.stldm.convert import convert_state_dict, load_official

    _, official_config = import_official(repo)
    import stldm.stldm_hf as hf  # noqa: PLC0415

    config = getattr(official_config, CONFIG_NAMES[dataset])
    model = hf.GaussianDiffusion(vp_param=config["vp_param"], stldm_param=config["stldm_param"], **config["param"])
    model.load_state_dict(official.state_dict())
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        converted = convert_state_dict(load_official(Path(folder) / "model.safetensors"), ours.net.state_dict())
    return {"hf_safetensors_weights": max(maxdiff(converted[k], v) for k, v in ours.net.state_dict().items())}


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


@torch.no_grad()
def network_parity(official, ours, x: torch.Tensor) -> dict[str, float]:
    official.eval(), ours.eval()
    net, b = ours.net, x.shape[0]
    mean, log_var = net.encode(x)
    off_mean, off_log_var = official.backbone.vae.encode(x.flatten(0, 1))
    out = {"vae_encode_mean": maxdiff(mean.flatten(0, 1), off_mean),
           "vae_encode_log_var": maxdiff(log_var.flatten(0, 1), off_log_var),
           "vae_decode": maxdiff(net.decode(mean).flatten(0, 1), official.backbone.vae.decode(off_mean))}
    translator_mean, _ = net.translate(mean)
    hid, _ = official.backbone.hid(off_mean.unflatten(0, (b, -1)))
    out["translator_mean"] = maxdiff(translator_mean, hid.chunk(2, dim=1)[0])
    z_t = torch.randn(b, net.out_frames, *mean.shape[2:])
    t = torch.full((b,), 17)
    out["unet_cond"] = maxdiff(net.denoise(z_t, t, translator_mean),
                               official.diff_unet(z_t, t, conds=translator_mean.flatten(0, 1)))
    out["unet_uncond"] = maxdiff(net.denoise(z_t, t, None), official.diff_unet(z_t, t, conds=None))
    return out


def loss_parity(official, ours, x: torch.Tensor, y: torch.Tensor, *, keep: float) -> dict[str, float]:
    from nowcast_pl.models.stldm.task import TrainingDraws

    official.train(), ours.train()
    zero_stochastic_depth(official, ours)
    b, t_in, t_out = x.shape[0], x.shape[1], y.shape[1]
    latent = (32, x.shape[-2] // 4, x.shape[-1] // 4)
    draws = TrainingDraws(t=torch.tensor([3, 40][:b]), keep=torch.full((b,), keep),
                          noise_vae=torch.randn(b, t_in + t_out, *latent), noise_in=torch.randn(b, t_in, *latent),
                          noise_out=torch.randn(b, t_out, *latent), noise_diffusion=torch.randn(b, t_out, *latent))
    terms = ours.loss_terms(x, y, draws)
    # Official draw order in compute_loss: backbone (inputs, outputs), diffusion noise, backbone again, VAE.
    order = [draws.noise_in, draws.noise_out, draws.noise_diffusion, draws.noise_in, draws.noise_out,
             draws.noise_vae]
    with scripted_randomness(order, randint=draws.t, uniform=0.0 if keep else 0.9):
        recon, constraint, diffusion, prior = official.compute_loss(x, y)
    tag = "cond" if keep else "uncond"
    return {f"loss_vae_{tag}": maxdiff(terms["vae"], recon),
            f"loss_constraint_{tag}": maxdiff(terms["constraint"], constraint),
            f"loss_diffusion_{tag}": maxdiff(terms["diffusion"], diffusion),
            f"loss_prior_{tag}": maxdiff(terms["prior"], prior)}


@torch.no_grad()
def sample_parity(official, ours, x: torch.Tensor, steps: int) -> dict[str, float]:
    official.eval(), ours.eval()
    official.sampling_timesteps, official.is_ddim_sampling = steps, True
    settings = ours.sampling
    settings.sampler, settings.sampling_steps, settings.eta, settings.guidance_scale = "ddim", steps, 0.0, 1.0
    ours.sample_first_estimate = True
    b, t_out = x.shape[0], ours.out_frames
    latent = (32, x.shape[-2] // 4, x.shape[-1] // 4)
    noise_in, noise_out = torch.randn(b, x.shape[1], *latent), torch.randn(b, t_out, *latent)
    x_T = torch.randn(b, t_out, *latent)
    sample, first = ours.sample_frames(x, None, x_T=x_T, noise_in=noise_in, noise_out=noise_out)
    with scripted_randomness([noise_in, noise_out], randn=x_T):
        off_sample, off_first = official(x, include_mu=True)
    return {f"sample_ddim{steps}_cfg1": maxdiff(sample, off_sample),
            "first_estimate_sampled": maxdiff(first, off_first)}


def machine() -> dict:
    """Where the numbers were measured: CPU model, cores, torch version and threads."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def report(result: dict, output: Path | None) -> dict:
    """Print ``result`` as indented JSON and, when ``output`` is given, write it there too."""
    text = json.dumps(result, indent=1)
    print(text)
    if output:
        output.write_text(text + "\n")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="STLDM parity with sqfoo/stldm_official (fp32, CPU)")
    parser.add_argument("--official-repo", type=Path, required=True, help="checkout of sqfoo/stldm_official")
    parser.add_argument("--dataset", choices=sorted(FRAMES), default="hko7")
    parser.add_argument("--size", type=int, default=128, help="frame side (128 in the paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-steps", type=int, default=5)
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    official, ours = build(args.dataset, args.official_repo.resolve(), args.seed)
    layout = hugging_face_layout(args.dataset, args.official_repo.resolve(), official, ours)
    t_in, t_out = FRAMES[args.dataset]
    torch.manual_seed(args.seed + 1)
    x, y = torch.rand(2, t_in, 1, args.size, args.size), torch.rand(2, t_out, 1, args.size, args.size)
    diffs = layout | network_parity(official, ours, x[:1])
    # Sampling before the training steps: the released code updates BatchNorm running statistics twice per
    # step (two Translator passes), ours once, so evaluation-mode outputs differ after a training step.
    diffs |= sample_parity(official, ours, x[:1], args.sample_steps)
    diffs |= loss_parity(official, ours, x, y, keep=1.0)
    diffs |= loss_parity(official, ours, x, y, keep=0.0)
    result = {"model": "stldm", "dataset": args.dataset, "frame_size": args.size, "dtype": "float32",
              "device": "cpu", "tolerance": TOLERANCE, "max_abs_diff": diffs,
              "pass": all(v <= TOLERANCE for v in diffs.values()),
              "machine": machine()}
    return report(result, args.output)


if __name__ == "__main__":
    main()
