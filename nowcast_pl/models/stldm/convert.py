"""Convert released STLDM weights (``sqfoo/stldm_official``: ``*.pt`` state dicts of ``GaussianDiffusion``
and the Hugging Face ``sqfoo/STLDM_official`` safetensors) to :class:`nowcast_pl.models.stldm.network.STLDM`.

The mapping is by key pattern only; tensors are copied unchanged except the gain-only norms, stored
``(1, C, 1, 1)`` there and ``(C,)`` here. Dropped on purpose: the diffusion buffers (re-derived from the
schedule, which is checked) and the last condition-pyramid conv, whose output the released U-Net never uses.
Only the spatio-temporal ("3D") model is supported: the "2D" ablation wires its up path differently.

CLI: ``python -m nowcast_pl.models.stldm.convert OFFICIAL.pt OUT.ckpt`` writes a checkpoint that
``nowcast test --config configs/stldm_<dataset>.yaml --ckpt_path OUT.ckpt`` evaluates.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from nowcast_pl.checkpoints import IMPORTED, load_torch_file

# One table of key patterns, read both ways: released-code name <-> ours. ``{i}`` is an index, ``{d}`` a digit,
# ``{block}`` ``block1``/``block2``, ``{norm}`` ``norm1``/``norm2``, ``{path}`` any dotted path. A pattern ending in
# "." renames a key prefix, any other pattern a whole key. The first row that matches wins (the specific rows of
# the U-Net's middle block, whose attention the released code names ``qattn_*``, come before the general ones).
_KEY_TABLE: list[tuple[str, str]] = [
    # VAE: ConvSC -> (conv, norm); the head/readout convs keep their index.
    ("backbone.vae.encoder.enc.{i}.conv.conv.", "vae.encoder.{i}.0."),
    ("backbone.vae.encoder.enc.{i}.conv.norm.", "vae.encoder.{i}.1."),
    ("backbone.vae.encoder.enc.{i}.", "vae.encoder.{i}."),
    ("backbone.vae.decoder.dec.{i}.conv.conv.", "vae.decoder.{i}.0."),
    ("backbone.vae.decoder.dec.{i}.conv.norm.", "vae.decoder.{i}.1."),
    ("backbone.vae.decoder.dec.{i}.", "vae.decoder.{i}."),
    # Translator (MidMetaNet of gSTA MetaBlocks).
    ("backbone.hid.enc.{i}.reduction.", "translator.stages.{i}.1."),
    ("backbone.hid.enc.{i}.block.layer_scale_{d}", "translator.stages.{i}.0.layer_scale{d}"),
    ("backbone.hid.enc.{i}.block.attn.proj_1.", "translator.stages.{i}.0.attn.body.0."),
    ("backbone.hid.enc.{i}.block.attn.proj_2.", "translator.stages.{i}.0.attn.body.3."),
    ("backbone.hid.enc.{i}.block.attn.spatial_gating_unit.conv0.", "translator.stages.{i}.0.attn.body.2.local."),
    ("backbone.hid.enc.{i}.block.attn.spatial_gating_unit.conv_spatial.",
     "translator.stages.{i}.0.attn.body.2.dilated."),
    ("backbone.hid.enc.{i}.block.attn.spatial_gating_unit.conv1.", "translator.stages.{i}.0.attn.body.2.to_gate."),
    ("backbone.hid.enc.{i}.block.mlp.fc1.", "translator.stages.{i}.0.mlp.body.0."),
    ("backbone.hid.enc.{i}.block.mlp.dwconv.dwconv.", "translator.stages.{i}.0.mlp.body.1."),
    ("backbone.hid.enc.{i}.block.mlp.fc2.", "translator.stages.{i}.0.mlp.body.3."),
    ("backbone.hid.enc.{i}.block.{norm}.", "translator.stages.{i}.0.{norm}."),
    # U-Net: time MLP, residual blocks, attention, resampling, condition pyramid.
    ("diff_unet.time_mlp.mlp.", "unet.time_mlp.net."),
    ("diff_unet.{path}.{block}.mlp.", "unet.{path}.{block}.emb_proj."),
    ("diff_unet.{path}.{block}.block{d}.proj.", "unet.{path}.{block}.unit{d}.conv."),
    ("diff_unet.{path}.{block}.block{d}.norm.", "unet.{path}.{block}.unit{d}.norm."),
    ("diff_unet.{path}.{block}.res_conv.", "unet.{path}.{block}.skip."),
    ("diff_unet.mid.qattn_spatial.fn.norm.g", "unet.mid.spatial.norm.gain"),
    ("diff_unet.mid.qattn_spatial.fn.fn.to_out.0.", "unet.mid.spatial.fn.to_out."),
    ("diff_unet.mid.qattn_spatial.fn.fn.", "unet.mid.spatial.fn."),
    ("diff_unet.{path}.attn_spatial.fn.norm.g", "unet.{path}.spatial.norm.gain"),
    ("diff_unet.{path}.attn_spatial.fn.fn.to_out.1.g", "unet.{path}.spatial.fn.out_norm.gain"),
    ("diff_unet.{path}.attn_spatial.fn.fn.to_out.0.", "unet.{path}.spatial.fn.to_out."),
    ("diff_unet.{path}.attn_spatial.fn.fn.", "unet.{path}.spatial.fn."),
    ("diff_unet.mid.qattn_time.fn.norm.g", "unet.mid.temporal.block.norm.gain"),
    ("diff_unet.mid.qattn_time.fn.fn.", "unet.mid.temporal.block.fn."),
    ("diff_unet.{path}.attn_temporal.fn.norm.g", "unet.{path}.temporal.block.norm.gain"),
    ("diff_unet.{path}.attn_temporal.fn.fn.", "unet.{path}.temporal.block.fn."),
    ("diff_unet.downs.{i}.last.", "unet.downs.{i}.down."),
    ("diff_unet.ups.{i}.up.", "unet.ups.{i}.up."),
    ("diff_unet.conditions.{i}.", "unet.cond_downs.{i}."),
]
_PLACEHOLDERS = {"i": r"\d+", "d": r"\d", "block": r"block\d", "norm": r"norm[12]", "path": r".+"}


def _pattern(template: str) -> re.Pattern[str]:
    """A key pattern of the table as a regular expression with one named group per placeholder."""
    parts = re.split(r"\{(\w+)\}", template)
    body = "".join(f"(?P<{part}>{_PLACEHOLDERS[part]})" if index % 2 else re.escape(part)
                   for index, part in enumerate(parts))
    return re.compile(f"^{body}" + ("" if template.endswith(".") else "$"))


_TO_OURS = [(_pattern(official), ours) for official, ours in _KEY_TABLE]
_TO_OFFICIAL = [(_pattern(ours), official) for official, ours in _KEY_TABLE]


def _translate(key: str, rules: list[tuple[re.Pattern[str], str]]) -> str | None:
    """``key`` renamed by the first rule that matches it (the unmatched rest of the key kept), or None."""
    for pattern, template in rules:
        if match := pattern.match(key):
            return template.format(**match.groupdict()) + key[match.end():]
    return None


ARCHITECTURE = ("in_frames", "out_frames", "latent_channels", "vae_layers", "translator_width", "translator_depth",
                "mlp_ratio", "drop_path", "unet_base", "unet_mults", "patch_size", "groups", "heads", "dim_head",
                "temporal_attention", "temporal_norm", "timesteps", "noise_schedule", "objective")
_SCHEDULE_BUFFERS = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                     "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                     "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                     "posterior_mean_coef1", "posterior_mean_coef2", "loss_weight"}


def load_official(path: str | Path) -> dict[str, Tensor]:
    """Read an official state dict from ``.pt``/``.pth`` (bare or under ``"model"``) or ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official STLDM checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    state = load_torch_file(path)
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not an STLDM state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def official_config(state: Mapping[str, Tensor]) -> dict[str, int]:
    """Frame counts and sizes read off the tensor shapes: ``in_frames``, ``out_frames``, ``latent_channels``,
    ``translator_depth``, ``translator_width`` (the STLDM constructor's arguments)."""
    try:
        latent = state["backbone.vae.decoder.readout.weight"].shape[1]
        depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"backbone\.hid\.enc\.(\d+)\.", k)))
        width_in = state["backbone.hid.enc.0.block.norm1.weight"].numel()
        width_out = state[f"backbone.hid.enc.{depth - 1}.reduction.weight"].shape[0]
        hidden = state[f"backbone.hid.enc.{depth - 1}.block.norm1.weight"].numel()
    except (KeyError, ValueError) as err:
        raise ValueError(f"not an STLDM (sqfoo/stldm_official 3D) state dict: missing {err}") from err
    return dict(in_frames=width_in // latent, out_frames=width_out // (2 * latent), latent_channels=latent,
                translator_depth=depth, translator_width=hidden)


def rename(key: str) -> str | None:
    """Our key for an official key, None for a dropped schedule buffer; ValueError for an unknown key."""
    if key in _SCHEDULE_BUFFERS:
        return None
    new = _translate(key, _TO_OURS)
    if new is not None:
        return new
    raise ValueError(f"unexpected key in the official STLDM state dict: {key!r} (a '2D'/spatial or other "
                     f"model? only the 3D STLDM is supported)")


def convert_state_dict(official: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map an official state dict onto ``target`` (our ``STLDM.state_dict()``), checking keys and shapes.

    Raises:
        ValueError: naming the missing/unexpected keys or the first shape mismatch (e.g. other frame counts).
    """
    converted: dict[str, Tensor] = {}
    readout = 1 + max((int(m.group(1)) for k in official
                       if (m := re.match(r"backbone\.vae\.decoder\.dec\.(\d+)\.", k))), default=0)
    for key, value in official.items():
        new = rename(key.replace("backbone.vae.decoder.readout.", f"backbone.vae.decoder.dec.{readout}."))
        if new is None or (new not in target and new.startswith("unet.cond_downs.")):
            continue  # schedule buffers; the unused last condition conv
        converted[new] = value
    missing = sorted(set(target) - set(converted))
    unexpected = sorted(set(converted) - set(target))
    if missing or unexpected:
        raise ValueError(f"official STLDM state dict does not fit this configuration: missing {missing[:5]} "
                         f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})")
    for key, value in converted.items():
        want = target[key].shape
        if value.numel() == want.numel() and key.endswith(".gain"):
            converted[key] = value.reshape(want)
        elif value.shape != want:
            raise ValueError(f"official STLDM tensor for {key} has shape {tuple(value.shape)}, ours "
                             f"{tuple(want)}: the checkpoint was trained with another configuration "
                             f"(frames, widths); build the model with {official_config(official)}")
    return converted


def export_official(ours: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Our ``STLDM.state_dict()`` in the released code's layout (the inverse of :func:`convert_state_dict`).

    The released model's unused last condition conv is filled with zeros; its schedule buffers are not
    written (the released model builds them itself: load with ``strict=False``). Spatial-only models have no
    released counterpart.
    """
    if not any(".temporal.block." in key for key in ours):
        raise ValueError("a spatial-only STLDM has no released-code layout to export to")
    readout = max(int(m.group(1)) for k in ours if (m := re.match(r"vae\.decoder\.(\d+)\.", k)))
    exported: dict[str, Tensor] = {}
    for key, value in ours.items():
        if key.startswith(f"vae.decoder.{readout}."):
            exported[key.replace(f"vae.decoder.{readout}.", "backbone.vae.decoder.readout.")] = value
            continue
        new = _translate(key, _TO_OFFICIAL)
        if new is None:
            raise ValueError(f"no released-code name for {key!r}")
        exported[new] = value.reshape(1, -1, 1, 1) if key.endswith(".gain") else value
    last = sum(1 for k in ours if re.match(r"unet\.downs\.\d+\.down\.weight$", k)) - 1
    top = ours[f"unet.downs.{last}.down.weight"]
    exported[f"diff_unet.conditions.{last}.weight"] = top.new_zeros(top.shape[0], top.shape[1], 4, 4)
    exported[f"diff_unet.conditions.{last}.bias"] = top.new_zeros(top.shape[0])
    return exported


def check_schedule(official: Mapping[str, Tensor], alphas_cumprod: Tensor) -> None:
    """Raise ValueError if the checkpoint's ᾱ buffer differs from ours (another schedule or T)."""
    theirs = official.get("alphas_cumprod")
    if theirs is None:
        return
    if theirs.shape != alphas_cumprod.shape or not torch.allclose(theirs.double(), alphas_cumprod.double(),
                                                                    rtol=1e-4, atol=1e-7):
        raise ValueError(f"official checkpoint uses another noise schedule ({theirs.numel()} steps); set "
                         f"model.timesteps/schedule to match it")


def write_checkpoint(official_path: str | Path, out_path: str | Path, **task_overrides) -> Path:
    """Convert ``official_path`` and save a Lightning checkpoint of :class:`~nowcast_pl.models.stldm.STLDMTask`."""
    from nowcast_pl.models.stldm.task import STLDMTask

    official = load_official(official_path)
    config = official_config(official)
    task = STLDMTask(in_frames=config["in_frames"], out_frames=config["out_frames"], **task_overrides)
    check_schedule(official, task.alphas_cumprod)
    task.net.load_state_dict(convert_state_dict(official, task.net.state_dict()))
    return save_task_checkpoint(task, out_path, source=official_path)


def save_task_checkpoint(task, out_path: str | Path, *, source: str | Path | None = None) -> Path:
    """Save ``task`` as a Lightning checkpoint that ``nowcast test --ckpt_path`` loads (step 0, no optimiser).

    It is marked as imported (from ``source``), so its architecture settings replace a config's.
    """
    import lightning

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Only the architecture: evaluation settings (thresholds, protocol, ...) stay with the user's config.
    hparams = {"_class_path": "nowcast_pl.models.stldm.STLDMTask"} | {k: task.hparams[k] for k in ARCHITECTURE}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams, "epoch": 0, "global_step": 0,
                "pytorch-lightning_version": lightning.__version__,
                IMPORTED: {"file": None if source is None else str(source), "model": "stldm"}}, out_path)
    return out_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official", help="official *.pt state dict or Hugging Face model.safetensors")
    parser.add_argument("output", help="Lightning checkpoint to write (for nowcast test --ckpt_path)")
    args = parser.parse_args(argv)
    path = write_checkpoint(args.official, args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
