"""FLOPs of one forecast and one training step of each paper config, and the H100 time they imply at best.

    python -m benchmarks.flops [--configs configs/raindiff_shanghai.yaml ...] [--output benchmarks/results/flops.json]

For each config, our model with random weights at batch 1, the config's frame counts and frame size, fp32 on
CPU. FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and
attention, 2 FLOPs per multiply-add; element-wise operations are not counted):

* forecast: the config's sampler (STLDM guided with w = 1, both branches in one batched call) is run with 1 and
  with 2 steps; the difference is the cost of one step (its network calls: one per segment for RainDiff /
  DiffCast), the rest is the one-off part (mean, encoders, decoder). One forecast at the paper's step count
  is ``one_off + steps * per_step``. CPU seconds are measured the same way, from the fastest of ``--repeats``
  1-step and (1 + ``--timing-steps``)-step forecasts, and extrapolated, not by running the whole forecast.
* training step: the task's ``training_loss`` forward and backward (with activation checkpointing as the config
  sets it, recomputed forwards included; no optimiser update), FLOPs and CPU seconds of one step (the first
  of the process, timed under the counter);
  ``train_step_flops_config_batch`` scales it to the config's ``batch_size`` (linear in batch).

``h100_lower_bound_s`` is FLOPs / the H100 SXM dense bf16 tensor-core peak (989 TFLOP/s, NVIDIA H100 datasheet,
without sparsity): no real run is faster; real runs are slower (memory traffic, element-wise kernels, launch
overhead, fp32 parts).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.harness import REPO, config_sections, output_argument, timed, write_result
from benchmarks.pairs import pair_module

PAPER_CONFIGS = ("configs/raindiff_shanghai.yaml", "configs/diffcast_shanghai.yaml", "configs/stldm_hko7.yaml",
                 "configs/stldm_sevir.yaml", "configs/stldm_meteonet.yaml")
H100_BF16_DENSE_FLOPS = 989e12  # FLOP/s, H100 SXM5, dense (no sparsity) bf16 tensor cores
TASK_MODELS = {"RainDiffTask": "raindiff", "STLDMTask": "stldm"}


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as FlopCounterMode counts them."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def model_of(config: Path) -> str:
    """The :mod:`benchmarks.pairs` model name of a config's task class."""
    from nowcast_pl.config import read_config  # noqa: PLC0415

    class_path = read_config([config], [], build=()).config.model.class_path
    name = class_path.rsplit(".", 1)[-1]
    if name not in TASK_MODELS:
        raise SystemExit(f"{config}: model.class_path {class_path} is not one of {', '.join(TASK_MODELS)}")
    return TASK_MODELS[name]


def forecast_cost(side, repeats: int, timing_steps: int = 4) -> dict:
    """FLOPs and CPU seconds of one forecast at the paper step count: FLOPs from 1- and 2-step forecasts,
    seconds from the fastest of ``repeats`` 1-step and ``1 + timing_steps``-step forecasts."""
    sampler, steps = side.sampler
    side.module.eval()
    flops, seconds = {}, {}
    for k in (1, 2):
        side.set_sampler(sampler, k)
        flops[k] = counted_flops(side.forecast)
    for k in (1, 1 + timing_steps):
        side.set_sampler(sampler, k)
        seconds[k] = min(timed(side.forecast, repeats)[0])
    per_step, per_step_s = flops[2] - flops[1], max(seconds[1 + timing_steps] - seconds[1], 0.0) / timing_steps
    one_off, one_off_s = flops[1] - per_step, max(seconds[1] - per_step_s, 0.0)
    total = one_off + steps * per_step
    return {"sampler": sampler, "steps": steps, "flops": total, "per_step_flops": per_step,
            "one_off_flops": one_off, "h100_lower_bound_s": total / H100_BF16_DENSE_FLOPS,
            "cpu_s_estimate": one_off_s + steps * per_step_s, "cpu_per_step_s": per_step_s,
            "cpu_one_off_s": one_off_s}


def training_cost(side, batch_size: int) -> dict:
    """FLOPs of one training step (loss forward and backward) at batch 1, and its CPU seconds (the counted step
    itself: the counter adds one Python call per operator, small against 128 x 128 convolutions)."""
    side.module.train()
    side.module.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        seconds = timed(lambda: side.loss().backward(), 1)[0][0]
    flops = counter.get_total_flops()
    return {"flops": flops, "h100_lower_bound_s": flops / H100_BF16_DENSE_FLOPS, "cpu_s_counted_step": seconds,
            "config_batch_size": batch_size, "flops_config_batch": flops * batch_size,
            "h100_lower_bound_config_batch_s": flops * batch_size / H100_BF16_DENSE_FLOPS}


def measure(config: Path, repeats: int, timing_steps: int) -> dict:
    model = model_of(config)
    side = pair_module(model).ours(model, config)
    _, data = config_sections(config)
    with torch.no_grad():
        forecast = forecast_cost(side, repeats, timing_steps)
    return {"config": str(config.relative_to(REPO)), "model": model,
            "frames": f"{data['in_frames']}->{data['out_frames']}", "size": data.get("frame_size") or 128,
            "params": sum(p.numel() for p in side.module.parameters()), "forecast": forecast,
            "train_step": training_cost(side, data.get("batch_size", 1))}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=Path, nargs="+", default=[Path(c) for c in PAPER_CONFIGS])
    parser.add_argument("--repeats", type=int, default=2, help="timed forecasts of each length (fastest counts)")
    parser.add_argument("--timing-steps", type=int, default=4,
                        help="sampler steps between the two timed forecast lengths")
    output_argument(parser)
    args = parser.parse_args(argv)
    args.configs = [(c if c.is_absolute() else REPO / c).resolve() for c in args.configs]
    missing = [str(c) for c in args.configs if not c.is_file()]
    if missing:
        parser.error(f"--configs: no such file: {', '.join(missing)}")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(0)
    rows = [measure(config, args.repeats, args.timing_steps) for config in args.configs]
    result = {"counter": "torch.utils.flop_counter.FlopCounterMode", "dtype": "float32", "device": "cpu",
              "batch": 1, "h100_peak_flops_per_s": H100_BF16_DENSE_FLOPS,
              "h100_peak": "H100 SXM dense bf16 tensor-core peak (989 TFLOP/s, no sparsity)",
              "cpu_time": f"forecast: the fastest of {args.repeats} 1-step and {1 + args.timing_steps}-step "
                          "forecasts, extrapolated to the paper step count; "
                          "training: the counted step (the first of the process) timed",
              "configs": rows}
    return write_result(result, args.output, module="benchmarks.flops", argv=argv)


if __name__ == "__main__":
    main()
