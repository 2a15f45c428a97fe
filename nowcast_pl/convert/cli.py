"""``nowcast-convert raindiff|diffcast|stldm OFFICIAL OUT.ckpt``: official weights -> a checkpoint for ``nowcast``.

STLDM weights (``*.pt`` or the Hugging Face safetensors) go through :mod:`nowcast_pl.models.stldm.convert`.

The output holds the converted weights of :class:`nowcast_pl.models.raindiff.RainDiffTask` (``net.*``) in
Lightning's checkpoint layout with the architecture they need as saved settings (``variant: released``: the
official weights use the released Token-wise Attention arithmetic), so ``nowcast test --config
configs/raindiff_shanghai.yaml --ckpt_path OUT.ckpt`` evaluates it as written. A file that is not a readable
torch file is refused in one line.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import lightning
import torch
from torch import Tensor

from nowcast_pl.checkpoints import IMPORTED
from nowcast_pl.models.raindiff.convert import MODELS, convert_state_dict, load_official_state_dict
from nowcast_pl.models.raindiff.network import RainDiffNet

TASK = "nowcast_pl.models.raindiff.RainDiffTask"


def architecture_of(official: dict[str, Tensor], model: str) -> dict:
    """RainDiffNet arguments read off the official tensor shapes (dim, dim_mults, segment length)."""
    try:
        dim = official["model.init_conv.weight"].shape[0]
        levels = _count(official, r"model\.downs\.(\d+)\.")
        widths = [official[f"model.downs.{i}.1.block1.proj.weight"].shape[0] for i in range(levels)]
        mid = official["model.mid_block1.block1.proj.weight"].shape[0]
        in_frames = official["model.final_conv.weight"].shape[0]
        simvp = dict(hid_S=official["backbone_net.enc.enc.0.conv.conv.weight"].shape[0],
                     hid_T=official["backbone_net.hid.enc.0.layers.0.conv.weight"].shape[0],
                     N_S=_count(official, r"backbone_net\.enc\.enc\.(\d+)\."),
                     N_T=_count(official, r"backbone_net\.hid\.enc\.(\d+)\."))
    except KeyError as missing:
        raise ValueError(f"not an official {model} state dict: it has no {missing} "
                         "(expected the U-Net under 'model.', the context net under 'ctx_net.', "
                         "SimVP under 'backbone_net.')") from None
    mults = [w // dim for w in widths[1:]] + [mid // dim]
    raindiff = model == "raindiff"
    return dict(in_frames=in_frames, out_frames=4 * in_frames, dim=dim, dim_mults=tuple(mults),
                tokenwise_attention=raindiff, post_attention=raindiff, variant="released", **simvp)


def _count(state: dict[str, Tensor], pattern: str) -> int:
    """Number of distinct indices captured by ``pattern`` among the keys of ``state``."""
    return len({m.group(1) for key in state if (m := re.match(pattern, key))})


def convert_file(model: str, source: Path, destination: Path) -> dict:
    """Write ``destination`` (Lightning checkpoint with ``state_dict``); return the architecture used."""
    official = load_official_state_dict(source)
    try:
        arch = architecture_of(official, model)
    except ValueError as err:
        raise ValueError(f"{source} is {err}") from None
    net = RainDiffNet(**arch)
    state = convert_state_dict(official, net.state_dict(), model)
    # The architecture (out_frames is a guess from the file, so the data's value applies) as saved settings:
    # they replace a config's (e.g. variant: paper), see nowcast_pl.checkpoints.
    settings = {"_class_path": TASK} | {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in arch.items() if k != "out_frames"}
    checkpoint = {"state_dict": {f"net.{k}": v for k, v in state.items()}, "epoch": 0, "global_step": 0,
                  "pytorch-lightning_version": lightning.__version__, "hyper_parameters": settings,
                  IMPORTED: {"file": str(source), "model": model, **arch}}
    destination.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, destination)
    return arch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nowcast-convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=(*MODELS, "stldm"), help="which official code the weights come from")
    parser.add_argument("official", type=Path, help="official checkpoint (ckpt-<step>.pt or a state dict)")
    parser.add_argument("output", type=Path, help="checkpoint to write, e.g. runs/raindiff_official.ckpt")
    args = parser.parse_args(argv)
    try:
        if args.model == "stldm":
            from nowcast_pl.models.stldm.convert import write_checkpoint

            print(f"wrote {write_checkpoint(args.official, args.output)} (stldm)")
            return
        arch = convert_file(args.model, args.official, args.output)
    except (FileNotFoundError, ValueError) as err:
        if os.environ.get("NOWCAST_DEBUG"):
            raise
        print(f"nowcast-convert: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {args.output} ({args.model}, in_frames={arch['in_frames']}, dim={arch['dim']}, "
          f"dim_mults={list(arch['dim_mults'])}, variant=released)")
