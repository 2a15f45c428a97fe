"""Numerical parity of our RainDiff, DiffCast or STLDM with the official code, fp32 on CPU.

    python -m benchmarks.parity --model raindiff --official PATH/TO/RaindDiff
    python -m benchmarks.parity --model diffcast --official PATH/TO/DiffCast
    python -m benchmarks.parity --model stldm --official PATH/TO/stldm_official [--dataset hko7|sevir|meteonet]

Builds the official model with random weights (seeded), converts its state dict into ours with the model's
converter and prints one JSON object: ``max_abs_diff`` holds the largest absolute difference of each compared
output, ``reference_magnitude`` the largest absolute official value of the same output (for a loss, its
value), ``pass`` whether every difference is within ``tolerance``. The official code is imported at run time
from the checkout given with ``--official`` (never vendored; see README.md for the packages it needs).

RainDiff / DiffCast (:mod:`benchmarks.pairs.raindiff`): the SimVP mean, both encoder contexts, one U-Net call,
the training loss at fixed noise and timestep and a 5-step DDIM sample at fixed noise (5 -> 20 frames). STLDM
(:mod:`benchmarks.pairs.stldm`): VAE encode/decode, Translator mean, U-Net with and without condition, every
loss term of a conditional and an unconditional step, a 5-step guided DDIM sample with the sampled first
estimate, and the Hugging Face ``model.safetensors`` layout.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.harness import official_revision, output_argument, write_result
from benchmarks.pairs import MODELS, REPOSITORIES, pair_module

DATASETS = ("hko7", "meteonet", "sevir")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--official", type=Path, required=True, metavar="PATH",
                        help="checkout of the official code: "
                        + ", ".join(f"{m}: {r}" for m, r in REPOSITORIES.items()))
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels (128 in the papers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-steps", type=int, default=5, help="DDIM steps of the compared sample")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="STLDM only: which released configuration (frame counts and widths; default hko7)")
    output_argument(parser)
    args = parser.parse_args(argv)
    if args.model != "stldm" and args.dataset is not None:
        parser.error("--dataset applies to --model stldm only")
    args.dataset = args.dataset or "hko7"
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    checkout = args.official.resolve()
    pair = pair_module(args.model)
    torch.set_grad_enabled(True)
    options = {"size": args.size, "seed": args.seed, "sample_steps": args.sample_steps}
    if args.model == "stldm":
        options["dataset"] = args.dataset
    measured = pair.parity(args.model, checkout, **options)
    result = {"model": args.model, "dtype": "float32", "device": "cpu",
              "official_code": {"repository": REPOSITORIES[args.model], "commit": official_revision(checkout)},
              **measured}
    return write_result(result, args.output, module="benchmarks.parity", argv=argv)


if __name__ == "__main__":
    main()
