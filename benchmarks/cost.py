"""Cost of RainDiff, DiffCast or STLDM at a config: parameters, training step, forecast; optionally the official code.

    python -m benchmarks.cost --model raindiff [--config configs/raindiff_shanghai.yaml] [--official PATH] [--what all]
    python -m benchmarks.cost --model stldm --config configs/stldm_hko7.yaml --official PATH --what train_in_turn

Batch 1 at the config's frame counts and frame size, fp32, CPU, random weights. ``--what``:

* ``train``: AdamW steps (loss, backward, gradient norm clipped to 1) on one fixed batch: ``train_step_s``
  (median of the ``--steps`` timed steps after one warm-up step), its minimum and process-CPU median, and the
  process's peak RSS, ours and (with ``--official``) the official code, each in its own fresh process.
* ``sample``: one forecast with the config's sampler (``--sample-steps`` overrides its step count) from fixed
  noise, after an untimed 1-step forecast (``warmup_s``: includes compiling with
  ``--model-arg compile_denoiser=true``); for ours also the first DPM-Solver++(2M) step count
  whose forecast is within 0.02 mean absolute difference ([0, 1] units) of it (``--no-search`` skips this).
  STLDM forecasts are guided with w = 1, as the released ``ens_gen.py --c_str 1.0``.
* ``all``: ``train`` and ``sample``.
* ``train_in_turn`` / ``sample_in_turn`` (need ``--official``): ours and the official code alternated
  ``--rounds`` times in one process after one warm-up call each; ratios of the fastest and of the median call
  hold when the machine's speed drifts between isolated runs.
* ``train_profile`` (needs ``--official``): training steps alternated as above, each with the wall-clock
  seconds of its convolutions (forward, recomputed forward, backward) timed through a dispatch mode.
* ``unet`` (RainDiff / DiffCast, needs ``--official``): one denoiser call of ours and of the official U-Net
  alternated ``--rounds`` times; with ``compile_denoiser`` our uncompiled U-Net joins the rotation.
* ``attention`` (RainDiff): Token-wise Attention against full softmax attention on square maps of 64^2 to
  512^2 tokens (dim 64, forward), time and peak RSS per case, each in its own process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.harness import (
    REPO,
    config_sections,
    output_argument,
    peak_rss_gb,
    run_in_subprocess,
    timed,
    write_result,
)
from benchmarks.pairs import MODELS, REPOSITORIES, Side, pair_module

CONFIGS = {"raindiff": "configs/raindiff_shanghai.yaml", "diffcast": "configs/diffcast_shanghai.yaml",
           "stldm": "configs/stldm_hko7.yaml"}
ISOLATED = ("train", "sample")
IN_TURN = ("train_in_turn", "sample_in_turn", "train_profile")
FAST_SAMPLER, FAST_STEPS, FAST_TOLERANCE = "dpmpp_2m", (5, 8, 10, 15, 20, 25, 30, 40, 50), 0.02


def build(args: argparse.Namespace, side: str) -> Side:
    """Our model of ``--config`` or the official one at its frame counts (its own sampler steps by default)."""
    pair = pair_module(args.model)
    if side == "ours":
        return pair.ours(args.model, args.config, args.override)
    return pair.official(args.model, args.official, args.config, args.sample_steps)


def training_step(side: Side) -> Callable[[], None]:
    """One AdamW step (lr 1e-4) with the gradient norm clipped to 1."""
    params = [p for p in side.module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    side.module.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        side.loss().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    return step


def measure_train(args: argparse.Namespace, side_name: str) -> dict:
    side = build(args, side_name)
    step = training_step(side)
    wall, cpu = timed(step, args.steps + 1)
    without_grad = sum(p.numel() for p in side.module.parameters() if p.grad is None)
    return {"params": sum(p.numel() for p in side.module.parameters()), "params_without_grad": without_grad,
            "train_step_s": statistics.median(wall[1:]), "train_step_min_s": min(wall[1:]),
            "train_step_cpu_s": statistics.median(cpu[1:]), "train_step_first_s": wall[0],
            "train_step_times_s": wall, "train_peak_rss_gb": peak_rss_gb()}


def measure_sample(args: argparse.Namespace, side_name: str) -> dict:
    side = build(args, side_name)
    side.module.eval()
    sampler, steps = side.sampler if args.sample_steps is None else (side.sampler[0], args.sample_steps)
    side.set_sampler(sampler, 1)
    warmup, _ = timed(side.forecast, 1)
    side.set_sampler(sampler, steps)
    forecasts = []
    wall, cpu = timed(lambda: forecasts.append(side.forecast()), args.repeats)
    result = {"params": sum(p.numel() for p in side.module.parameters()), "sampler": sampler, "sample_steps": steps,
              "warmup_s": warmup[0], "sample_s": statistics.median(wall), "sample_min_s": min(wall),
              "sample_cpu_s": statistics.median(cpu), "sample_peak_rss_gb": peak_rss_gb()}
    if side_name == "ours" and not args.no_search:
        result["fast"] = fastest_sampler(side, forecasts[-1], steps)
    return result


def fastest_sampler(side: Side, reference: torch.Tensor, paper_steps: int) -> dict:
    """The first DPM-Solver++(2M) step count within ``FAST_TOLERANCE`` mean absolute difference of ``reference``."""
    tried = []
    for steps in [s for s in FAST_STEPS if s < paper_steps]:
        side.set_sampler(FAST_SAMPLER, steps)
        start = time.perf_counter()
        fast = side.forecast()
        tried.append({"sampler": FAST_SAMPLER, "sample_steps": steps, "sample_s": time.perf_counter() - start,
                      "mean_abs_diff": float((fast - reference).abs().mean())})
        if tried[-1]["mean_abs_diff"] <= FAST_TOLERANCE:
            return tried[-1] | {"tolerance": FAST_TOLERANCE, "tried": len(tried)}
    return {"sampler": None, "tolerance": FAST_TOLERANCE, "tried": tried}


class ConvolutionClock(TorchDispatchMode):
    """Wall-clock seconds spent in convolutions (forward, backward) while active.

    A dispatch mode sees every ATen call, including those of the backward pass; only the convolutions are
    timed. ``torch.profiler`` is not used: its per-operator overhead weighs on a step of many small operators
    (ours) far more than on one of few large ones, which skews a comparison of the two codes.
    """

    OPERATORS = {torch.ops.aten.convolution.default: "forward", torch.ops.aten.convolution_backward.default: "backward"}

    def __init__(self) -> None:
        super().__init__()
        self.seconds = {"forward": 0.0, "backward": 0.0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kind = self.OPERATORS.get(func)
        if kind is None:
            return func(*args, **(kwargs or {}))
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds[kind] += time.perf_counter() - start
        return out


def measure_in_turn(args: argparse.Namespace) -> dict:
    """Ours and the official code called in turn in one process, ``--rounds`` rounds after a warm-up each."""
    sides = {name: build(args, name) for name in ("ours", "official")}
    if args.what == "sample_in_turn":
        for side in sides.values():
            side.module.eval()
            side.set_sampler("ddim", side.sampler[1] if args.sample_steps is None else args.sample_steps)
        calls = {name: side.forecast for name, side in sides.items()}
    else:
        calls = {name: training_step(side) for name, side in sides.items()}
    for call in calls.values():
        call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    profiles: dict[str, list[dict]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            clock = ConvolutionClock() if args.what == "train_profile" else None
            with clock or contextlib.nullcontext():
                wall, _ = timed(call, 1)
            seconds[name].append(wall[0])
            if clock is not None:
                profiles[name].append(_profile_row(wall[0], clock))
    key = "sample_s" if args.what == "sample_in_turn" else "train_step_s"
    result = {"rounds": args.rounds, key: seconds,
              f"{key}_min_ratio_to_official": min(seconds["ours"]) / min(seconds["official"]),
              f"{key}_median_ratio_to_official": statistics.median(seconds["ours"])
              / statistics.median(seconds["official"])}
    return result | ({"convolution_profile": profiles} if args.what == "train_profile" else {})


def _profile_row(step_s: float, clock: ConvolutionClock) -> dict:
    convolutions = clock.seconds["forward"] + clock.seconds["backward"]
    return {"step_s": step_s, "convolution_forward_s": clock.seconds["forward"],
            "convolution_backward_s": clock.seconds["backward"], "other_s": step_s - convolutions,
            "convolution_share": convolutions / step_s}


def measure_attention(args: argparse.Namespace) -> dict:
    """One forward of Token-wise Attention or softmax attention over a (1, 64, n, n) map, this process."""
    from nowcast_pl.layers.attention import PixelSelfAttention  # noqa: PLC0415
    from nowcast_pl.models.raindiff.tokenwise_attention import TokenwiseAttention  # noqa: PLC0415

    torch.manual_seed(0)
    kind, side = args.attention_case.split(":")
    layer = (TokenwiseAttention(64, args.attention_variant) if kind == "tokenwise"
             else PixelSelfAttention(64, heads=1, dim_head=64)).eval()
    x = torch.randn(1, 64, int(side), int(side))
    base = peak_rss_gb()
    with torch.no_grad():
        wall, _ = timed(lambda: layer(x), 1)
    return {"time_s": wall[0], "peak_rss_increase_gb": peak_rss_gb() - base}


def attention_scaling(args: argparse.Namespace, argv: list[str]) -> list[dict]:
    variant = config_sections(args.config, args.override)[0].get("variant", "paper")
    rows = []
    for side in (64, 128, 256, 512):
        for kind in ("tokenwise", "softmax"):
            n = side * side
            row = {"tokens": n, "map": f"{side}x{side}", "attention": kind}
            score_gb = n * n * 4 / 2**30
            if kind == "softmax" and score_gb > args.attention_memory_gb:
                row["skipped"] = f"the {n}x{n} score matrix needs {score_gb:.0f} GB"
            else:
                row |= run_in_subprocess("benchmarks.cost", [*argv, "--worker", "attention",
                                                             "--attention-case", f"{kind}:{side}",
                                                             "--attention-variant", variant])
            rows.append(row)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--config", type=Path, help="default: " + ", ".join(f"{m}: {c}" for m, c in CONFIGS.items()))
    parser.add_argument("--official", type=Path, metavar="PATH",
                        help="checkout of the official code to measure too: "
                             + ", ".join(f"{m}: {r}" for m, r in REPOSITORIES.items()))
    parser.add_argument("--what", choices=("all", *ISOLATED, *IN_TURN, "unet", "attention"), default="all")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps after one warm-up step")
    parser.add_argument("--sample-steps", type=int, help="sampler steps of the timed forecast (default: the config's)")
    parser.add_argument("--repeats", type=int, default=1, help="timed forecasts after the warm-up")
    parser.add_argument("--no-search", action="store_true", help="skip the fastest-sampler search")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the in-turn measures")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="override one of the config's model.init_args for our model (repeatable)")
    parser.add_argument("--attention-memory-gb", type=float, default=4.0, help="largest softmax score matrix to run")
    output_argument(parser)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--attention-case", help=argparse.SUPPRESS)
    parser.add_argument("--attention-variant", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.config = (args.config or REPO / CONFIGS[args.model]).resolve()
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")
    needs_official = args.what in (*IN_TURN, "unet")
    if needs_official and args.official is None:
        parser.error(f"--what {args.what} compares with the official code: give --official PATH")
    if args.what in ("unet", "attention") and args.model == "stldm":
        parser.error(f"--what {args.what} applies to raindiff and diffcast only")
    if args.official is not None:
        args.official = args.official.resolve()
    if any("=" not in item for item in args.model_arg):
        parser.error(f"--model-arg takes KEY=VALUE, got {args.model_arg}")
    args.override = [f"--model.init_args.{item}" for item in args.model_arg]
    return args


def worker(args: argparse.Namespace) -> dict:
    if args.worker == "attention":
        return measure_attention(args)
    side, what = args.worker.split(":")
    return (measure_train if what == "train" else measure_sample)(args, side)


def main(argv: Sequence[str] | None = None) -> dict:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    if args.worker:
        result = worker(args)
        print(json.dumps(result))
        return result
    result: dict = {"model": args.model, "config": str(args.config.relative_to(REPO)), "batch": 1,
                    "dtype": "float32", "device": "cpu"}
    whats = ISOLATED if args.what == "all" else (args.what,) if args.what in ISOLATED else ()
    sides = ["ours"] + (["official"] if args.official is not None else [])
    for side in sides:
        target = result if side == "ours" else result.setdefault("official", {})
        for what in whats:
            target |= run_in_subprocess("benchmarks.cost", [*arguments, "--worker", f"{side}:{what}"])
    if "official" in result:
        result["official"]["code"] = REPOSITORIES[args.model]
        for key in ("train_step_s", "train_step_min_s", "train_step_cpu_s", "train_peak_rss_gb", "sample_s",
                    "sample_min_s", "sample_cpu_s"):
            if key in result and key in result["official"]:
                result[f"{key}_ratio_to_official"] = result[key] / result["official"][key]
    if args.what in IN_TURN:
        result |= measure_in_turn(args)
    if args.what == "unet":
        result |= pair_module(args.model).unet_calls(args.model, args.official, args.config, args.override, args.rounds)
    if args.what == "attention":
        result["attention_vs_softmax"] = attention_scaling(args, arguments)
    return write_result(result, args.output, module="benchmarks.cost", argv=arguments)


if __name__ == "__main__":
    main()
