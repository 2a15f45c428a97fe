"""STLDM: ours against the released code (``sqfoo/stldm_official``).

The released ``stldm/__init__.py`` imports ``huggingface_hub``, so the package is registered bare and
``stldm.stldm`` / ``stldm.config`` are imported from it. The state dict converts with
:mod:`nowcast_pl.models.stldm.convert`. Stochastic depth is set to 0 on both sides in the loss comparison (the
one random draw that cannot be shared).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import torch

from benchmarks.harness import Comparison, config_sections, import_official, scripted_randomness
from benchmarks.pairs import Side, our_side

FRAMES = {"hko7": (5, 20), "meteonet": (5, 20), "sevir": (13, 12)}
CONFIG_NAMES = {"hko7": "STLDM_HKO", "meteonet": "STLDM_METEO", "sevir": "STLDM_SEVIR"}
LATENT_CHANNELS = 32


def official_modules(checkout: Path) -> tuple[ModuleType, ModuleType]:
    """The released ``stldm.stldm`` (model) and ``stldm.config`` modules."""
    model = import_official(checkout, "stldm", "stldm.stldm", needs="stldm/stldm.py")
    return model, import_official(checkout, "stldm", "stldm.config", needs="stldm/config.py")


def converted_task(official: torch.nn.Module, dataset: str):
    """Our STLDMTask with the frame counts of ``dataset`` holding the official weights."""
    from nowcast_pl.models.stldm.convert import check_schedule, convert_state_dict  # noqa: PLC0415
    from nowcast_pl.models.stldm.task import STLDMTask  # noqa: PLC0415

    in_frames, out_frames = FRAMES[dataset]
    task = STLDMTask(in_frames=in_frames, out_frames=out_frames, thresholds=[0.5], protocol="stldm")
    state = official.state_dict()
    check_schedule(state, task.alphas_cumprod)
    task.net.load_state_dict(convert_state_dict(state, task.net.state_dict()))
    return task


def zero_stochastic_depth(official: torch.nn.Module, ours: torch.nn.Module) -> None:
    for module in official.modules():
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0
    for module in ours.modules():
        if hasattr(module, "rate") and type(module).__name__ == "DropPath":
            module.rate = 0.0


# ----- parity ----------------------------------------------------------------------------------------------


def compare_hugging_face_layout(comparison: Comparison, checkout: Path, dataset: str, official, ours) -> None:
    """Our weights against those converted from the Hugging Face release's file format.

    The released Hugging Face class is built with the same configuration, loads the official state dict
    strictly (so its keys are the ``*.pt`` keys) and writes ``model.safetensors`` with ``save_pretrained``.
    """
    from nowcast_pl.models.stldm.convert import convert_state_dict, load_official  # noqa: PLC0415

    hf = import_official(checkout, "stldm", "stldm.stldm_hf", needs="stldm/stldm_hf.py")
    _, official_config = official_modules(checkout)
    config = getattr(official_config, CONFIG_NAMES[dataset])
    model = hf.GaussianDiffusion(vp_param=config["vp_param"], stldm_param=config["stldm_param"], **config["param"])
    model.load_state_dict(official.state_dict())
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        converted = convert_state_dict(load_official(Path(folder) / "model.safetensors"), ours.net.state_dict())
    names = sorted(ours.net.state_dict())
    ours_state = ours.net.state_dict()
    comparison.add("hf_safetensors_weights", [ours_state[k] for k in names], [converted[k] for k in names])


@torch.no_grad()
def compare_networks(comparison: Comparison, official, ours, x: torch.Tensor) -> None:
    """VAE encode / decode, the Translator mean and one U-Net call with and without the condition."""
    official.eval(), ours.eval()
    net, b = ours.net, x.shape[0]
    mean, log_var = net.encode(x)
    off_mean, off_log_var = official.backbone.vae.encode(x.flatten(0, 1))
    comparison.add("vae_encode_mean", mean.flatten(0, 1), off_mean)
    comparison.add("vae_encode_log_var", log_var.flatten(0, 1), off_log_var)
    comparison.add("vae_decode", net.decode(mean).flatten(0, 1), official.backbone.vae.decode(off_mean))
    translator_mean, _ = net.translate(mean)
    hid, _ = official.backbone.hid(off_mean.unflatten(0, (b, -1)))
    comparison.add("translator_mean", translator_mean, hid.chunk(2, dim=1)[0])
    z_t = torch.randn(b, net.out_frames, *mean.shape[2:])
    t = torch.full((b,), 17)
    comparison.add("unet_cond", net.denoise(z_t, t, translator_mean),
                   official.diff_unet(z_t, t, conds=translator_mean.flatten(0, 1)))
    comparison.add("unet_uncond", net.denoise(z_t, t, None), official.diff_unet(z_t, t, conds=None))


def compare_loss(comparison: Comparison, official, ours, x: torch.Tensor, y: torch.Tensor, *, keep: float) -> None:
    """Each loss term of one training step at fixed draws: conditional (``keep`` 1) or unconditional (0)."""
    from nowcast_pl.models.stldm.task import TrainingDraws  # noqa: PLC0415

    official.train(), ours.train()
    zero_stochastic_depth(official, ours)
    b, t_in, t_out = x.shape[0], x.shape[1], y.shape[1]
    latent = (LATENT_CHANNELS, x.shape[-2] // 4, x.shape[-1] // 4)
    draws = TrainingDraws(t=torch.tensor([3, 40][:b]), keep=torch.full((b,), keep),
                          noise_vae=torch.randn(b, t_in + t_out, *latent), noise_in=torch.randn(b, t_in, *latent),
                          noise_out=torch.randn(b, t_out, *latent), noise_diffusion=torch.randn(b, t_out, *latent))
    terms = ours.loss_terms(x, y, draws)
    # Official draw order in compute_loss: backbone (inputs, outputs), diffusion noise, backbone again, VAE.
    order = [draws.noise_in, draws.noise_out, draws.noise_diffusion, draws.noise_in, draws.noise_out,
             draws.noise_vae]
    with scripted_randomness(order, randint=draws.t, uniform=0.0 if keep else 0.9):
        official_terms = official.compute_loss(x, y)
    tag = "cond" if keep else "uncond"
    for name, value in zip(("vae", "constraint", "diffusion", "prior"), official_terms, strict=True):
        comparison.add(f"loss_{name}_{tag}", terms[name], value)


@torch.no_grad()
def compare_sample(comparison: Comparison, official, ours, x: torch.Tensor, steps: int) -> None:
    """Guided DDIM (w = 1, eta 0) with the sampled first estimate, as the released code samples."""
    official.eval(), ours.eval()
    official.sampling_timesteps, official.is_ddim_sampling = steps, True
    settings = ours.sampling
    settings.sampler, settings.sampling_steps, settings.eta, settings.guidance_scale = "ddim", steps, 0.0, 1.0
    ours.sample_first_estimate = True
    b, t_out = x.shape[0], ours.out_frames
    latent = (LATENT_CHANNELS, x.shape[-2] // 4, x.shape[-1] // 4)
    noise_in, noise_out = torch.randn(b, x.shape[1], *latent), torch.randn(b, t_out, *latent)
    x_T = torch.randn(b, t_out, *latent)
    sample, first = ours.sample_frames(x, None, x_T=x_T, noise_in=noise_in, noise_out=noise_out)
    with scripted_randomness([noise_in, noise_out], randn=x_T):
        official_sample, official_first = official(x, include_mu=True)
    comparison.add(f"sample_ddim{steps}_cfg1", sample, official_sample)
    comparison.add("first_estimate_sampled", first, official_first)


def parity(model: str, checkout: Path, *, dataset: str = "hko7", size: int = 128, seed: int = 0,
           sample_steps: int = 5) -> dict:
    """Largest differences of ours (converted weights) against the released model, fp32 on CPU."""
    official_model, official_config = official_modules(checkout)
    torch.manual_seed(seed)
    official = official_model.model_setup(getattr(official_config, CONFIG_NAMES[dataset]), cfg_str=1.0)
    ours = converted_task(official, dataset)
    comparison = Comparison()
    compare_hugging_face_layout(comparison, checkout, dataset, official, ours)
    t_in, t_out = FRAMES[dataset]
    torch.manual_seed(seed + 1)
    x, y = torch.rand(2, t_in, 1, size, size), torch.rand(2, t_out, 1, size, size)
    compare_networks(comparison, official, ours, x[:1])
    # Sampling before the training steps: the released code updates BatchNorm running statistics twice per
    # step (two Translator passes), ours once, so evaluation-mode outputs differ after a training step.
    compare_sample(comparison, official, ours, x[:1], sample_steps)
    compare_loss(comparison, official, ours, x, y, keep=1.0)
    compare_loss(comparison, official, ours, x, y, keep=0.0)
    setting = {"dataset": dataset, "frames": f"{t_in}->{t_out}", "size": size, "seed": seed,
               "params": {"ours": sum(p.numel() for p in ours.parameters()),
                          "official": sum(p.numel() for p in official.parameters())}}
    return setting | comparison.result()


# ----- cost ------------------------------------------------------------------------------------------------


def _batch(in_frames: int, out_frames: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(1, in_frames, 1, size, size, generator=generator),
            torch.rand(1, out_frames, 1, size, size, generator=generator))


def ours(model: str, config: Path, overrides: Sequence[str] = ()) -> Side:
    """Our task of ``config``; forecasts are guided (w = 1, the released code's setting) from fixed noise."""
    from nowcast_pl.models.stldm.task import STLDMTask  # noqa: PLC0415

    init, data = config_sections(config, overrides)
    task = STLDMTask(**init)
    size = data.get("frame_size") or 128
    inputs, targets = _batch(data["in_frames"], data["out_frames"], size)
    latent = (1, data["out_frames"], task.net.vae.latent_channels, size // 4, size // 4)
    x_T = torch.randn(*latent, generator=torch.Generator().manual_seed(1))
    task.sampling.guidance_scale = 1.0

    def forecast() -> torch.Tensor:
        with torch.no_grad():
            return task.sample_frames(inputs, None, x_T=x_T)[0].clamp(0, 1)

    return our_side(task, inputs, targets, forecast)


def official(model: str, checkout: Path, config: Path, sample_steps: int | None) -> Side:
    """The released model of the same frame counts (``model_setup(config, cfg_str=1.0)``, as ``ens_gen.py
    --c_str 1.0``), guided DDIM with ``sample_steps`` steps (default: its own, 20); its loss is the sum of its
    four terms."""
    official_model, official_config = official_modules(checkout)
    _, data = config_sections(config)
    frames = (data["in_frames"], data["out_frames"])
    name = next((CONFIG_NAMES[d] for d, f in FRAMES.items() if f == frames), None)
    if name is None:
        raise SystemExit(f"{config}: the released code has no configuration for {frames[0]} -> {frames[1]} frames")
    module = official_model.model_setup(getattr(official_config, name), cfg_str=1.0)
    module.sampling_timesteps = sample_steps or module.sampling_timesteps
    module.is_ddim_sampling = True
    inputs, targets = _batch(*frames, data.get("frame_size") or 128)

    def forecast() -> torch.Tensor:
        with torch.no_grad():
            return module(inputs)

    def set_sampler(sampler: str, steps: int) -> None:
        if sampler != "ddim":
            raise ValueError(f"the released STLDM code samples with DDIM only, not {sampler}")
        module.sampling_timesteps = steps

    return Side(module=module, loss=lambda: sum(module.compute_loss(inputs, targets)), forecast=forecast,
                set_sampler=set_sampler, sampler=("ddim", module.sampling_timesteps))
