"""Parameters, training-step and sampling cost of RainDiff / DiffCast, ours and (optionally) the official code.

    python benchmarks/model_cost.py --config configs/raindiff_shanghai.yaml --official-repo PATH --what all

Prints one JSON object: ``params``, ``train_step_s``, ``train_peak_rss_gb``, ``sample_s``, ``sample_steps``
(and the details behind them) for our model and, under ``official``, the same keys for the official code
measured in the same environment. Setting: the config's model, batch 1, 128 x 128, 5 -> 20 frames, fp32, CPU,
random weights. Every measurement runs in its own subprocess (peak RSS is per process), one at a time.

* train: AdamW steps on one batch; ``train_step_s`` is the fastest step after the first, the peak RSS is
  the process's peak over all steps (``rss_after_first_step_gb`` is reported too).
* sample: one 20-frame forecast with DDIM 250 (eta 0, x0 clipped) from fixed noise (with
  ``--model-arg compile_denoiser=true``, after a 1-step forecast that compiles the U-Net, timed as
  ``compile_warmup_s``; set ``TORCHINDUCTOR_CACHE_DIR`` to an empty folder for a cold compile); then, for ours, the
  fastest core sampler (DPM-Solver++(2M)) at the smallest step count whose forecast stays within 2 % of the
  value range (mean absolute difference) of the DDIM-250 forecast from the same noise.
* train_in_turn (``--what train_in_turn``): training steps of ours and the official code alternated
  ``--rounds`` times in one process after one warm-up step each; ratios of the fastest and of the median.
* train_profile (``--what train_profile``): training steps of ours and the official code alternated
  ``--rounds`` times in one process, each with the wall-clock seconds of its convolutions (forward, including
  recomputed passes, and backward) timed through a dispatch mode: how much of a step the rest is.
* unet (``--what unet``): one denoiser call of ours and of the official U-Net, alternated ``--rounds`` times
  in one process after one untimed call of each (``first_call_s``: ours, including any compile), fastest of
  each: the per-call cost that dominates sampling (1000 calls per forecast). With ``compile_denoiser``, our
  uncompiled U-Net joins the rotation for ``compiled_to_eager_ratio``.
* twa (``--what twa``): Token-wise Attention against full softmax attention on square maps of 64^2 to 512^2
  tokens (dim 64, batch 1, forward only), time and peak RSS per case; cases whose n x n score matrix would not
  fit in memory are reported as skipped with its size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
FAST_STEPS = (5, 8, 10, 15, 20, 25, 30, 40, 50)


def model_args(config: Path, overrides: list[str] = ()) -> dict:
    """``model.init_args`` of a config as ``nowcast fit`` resolves it (includes, links, ``overrides``)."""
    from nowcast_pl.config import read_config

    return read_config([config], overrides, build=()).config.model.init_args.as_dict()


def build_ours(config: Path, in_frames: int, out_frames: int, overrides: list[str] = ()):
    """Our RainDiff task of ``config`` at the given frame counts (linked from the data section, as in the CLI),
    scored with pysteps at 20 dBZ; ``overrides`` are ``KEY=VALUE`` model init arguments."""
    from nowcast_pl.models.raindiff.task import RainDiffTask

    scoring = {"protocol": "pysteps", "thresholds": "[20.0]", "evaluation_scale": "null"}
    pairs = [*scoring.items(), *(item.split("=", 1) for item in overrides)]
    frames = ["--data.init_args.in_frames", str(in_frames), "--data.init_args.out_frames", str(out_frames)]
    args = model_args(config, frames + [a for key, value in pairs for a in (f"--model.init_args.{key}", value)])
    return RainDiffTask(**args)


def build_official(repo: Path, model: str, in_frames: int, out_frames: int, size: int):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from official_parity import import_official
    diffusion_module, simvp_module = import_official(model, repo)
    official = diffusion_module.get_model(T_in=in_frames, T_out=out_frames, sampling_timesteps=250)
    official.load_backbone(simvp_module.get_model((1, size, size), in_frames, out_frames))
    return official


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _training_setup(args, side: str, inputs: torch.Tensor, targets: torch.Tensor):
    """(module, loss function, AdamW) of one side for one batch."""
    shape = inputs.shape
    if side == "ours":
        task = build_ours(args.config, args.in_frames, args.out_frames, args.model_arg).train()
        module, loss_fn = task, lambda: task.training_loss({"inputs": inputs, "targets": targets})["loss"]
    else:
        module = build_official(args.official_repo, args.model, args.in_frames, args.out_frames, args.size).train()
        from official_parity import official_loss  # the official training loss (RainDiff 836f9ee)
        segments = -(-args.out_frames // args.in_frames)

        def loss_fn() -> torch.Tensor:
            t = torch.randint(0, 1000, (1,))
            return official_loss(args.model, module, inputs, targets, t, [torch.randn(shape) for _ in range(segments)])
    params = [p for p in module.parameters() if p.requires_grad]
    return module, loss_fn, torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95))


def _training_step(loss_fn, optimizer: torch.optim.Optimizer) -> float:
    """One AdamW step with the gradient norm clipped to 1; its wall time in seconds."""
    params = optimizer.param_groups[0]["params"]
    start = time.perf_counter()
    loss = loss_fn()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    return time.perf_counter() - start


def _batch(args) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return (torch.rand((1, args.in_frames, 1, args.size, args.size)),
            torch.rand((1, args.out_frames, 1, args.size, args.size)))


def measure_train(args) -> dict:
    module, loss_fn, optimizer = _training_setup(args, args.side, *_batch(args))
    times, rss_after_first = [], None
    for _ in range(args.train_steps):
        times.append(_training_step(loss_fn, optimizer))
        rss_after_first = rss_after_first or _peak_rss_gb()
    params = optimizer.param_groups[0]["params"]
    no_grad = sum(p.numel() for p in params if p.grad is None)
    return {"params": sum(p.numel() for p in module.parameters()), "params_without_grad": no_grad,
            "train_step_s": min(times[1:] or times), "train_step_times_s": times,
            "train_peak_rss_gb": _peak_rss_gb(), "rss_after_first_step_gb": rss_after_first}


def measure_train_in_turn(args) -> dict:
    """Training steps of ours and the official code alternated in one process (robust to machine load).

    The first step of each is a warm-up and not counted; ratios are ours / official of the fastest and of
    the median step.
    """
    inputs, targets = _batch(args)
    sides = {side: _training_setup(args, side, inputs, targets) for side in ("ours", "official")}
    times: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(args.rounds + 1):
        for side, (_, loss_fn, optimizer) in sides.items():
            times[side].append(_training_step(loss_fn, optimizer))
    counted = {side: values[1:] for side, values in times.items()}
    return {"train_step_times_s": times["ours"], "official_train_step_times_s": times["official"],
            "train_step_ratio_fastest": min(counted["ours"]) / min(counted["official"]),
            "train_step_ratio_median": statistics.median(counted["ours"]) / statistics.median(counted["official"]),
            "rounds": args.rounds}


class ConvolutionClock(TorchDispatchMode):
    """Wall-clock seconds spent in convolutions (forward, backward) while active.

    A dispatch mode sees every ATen call, including those of the backward pass; only the convolutions are
    timed, so the overhead on the rest is one Python call per operator. ``torch.profiler`` is not used: its
    per-operator overhead made our step (many small operators, recomputed passes) look ~40 % slower than it
    runs, and the official one hardly at all (one-off comparison), which skews a comparison of the two.
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


def measure_train_profile(args) -> dict:
    """Where a training step's time goes: wall-clock seconds in convolutions (forward, including recomputed
    passes, and backward) against the whole step, for ours and the official code alternated ``--rounds``
    times in one process after a warm-up step each. Convolutions run through the same oneDNN kernels in both
    codes; the official step's convolution share bounds how much faster the rest can make a step.
    """
    inputs, targets = _batch(args)
    sides = {side: _training_setup(args, side, inputs, targets) for side in ("ours", "official")}
    rows: dict[str, list[dict]] = {side: [] for side in sides}
    for _, loss_fn, optimizer in sides.values():
        _training_step(loss_fn, optimizer)
    for _ in range(args.rounds):
        for side, (_, loss_fn, optimizer) in sides.items():
            with ConvolutionClock() as clock:
                step = _training_step(loss_fn, optimizer)
            convolutions = clock.seconds["forward"] + clock.seconds["backward"]
            rows[side].append({"step_s": step, "convolution_forward_s": clock.seconds["forward"],
                               "convolution_backward_s": clock.seconds["backward"],
                               "other_s": step - convolutions, "convolution_share": convolutions / step})
    fastest = {side: min(values, key=lambda row: row["step_s"]) for side, values in rows.items()}
    return {"rounds": rows["ours"], "official_rounds": rows["official"], "fastest": fastest["ours"],
            "official_fastest": fastest["official"],
            "step_ratio_fastest": fastest["ours"]["step_s"] / fastest["official"]["step_s"]}


def _segment_noise(task_segments: int, shape, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for _ in range(task_segments)]


def measure_sample(args) -> dict:
    torch.manual_seed(0)
    inputs = torch.rand((1, args.in_frames, 1, args.size, args.size))
    segments = -(-args.out_frames // args.in_frames)
    x_T = _segment_noise(segments, inputs.shape, 1)
    if args.side == "official":
        official = build_official(args.official_repo, args.model, args.in_frames, args.out_frames, args.size).eval()
        sys.path.insert(0, str(REPO / "benchmarks"))
        from official_parity import _replayed_randomness
        official.sampling_timesteps = args.sample_steps
        draws = [n for noise in x_T for n in [noise] * args.sample_steps]
        start = time.perf_counter()
        with torch.no_grad(), _replayed_randomness(torch.zeros(1), draws):
            official.sample(inputs, args.out_frames)
        return {"sample_s": time.perf_counter() - start, "sample_steps": args.sample_steps, "sampler": "ddim"}
    task = build_ours(args.config, args.in_frames, args.out_frames, args.model_arg).eval()
    rows = [torch.Generator().manual_seed(0)]
    compile_s = None
    if task.compile_denoiser:  # compile once (a 1-step forecast), timed apart from the forecasts
        task.sampling.sampler, task.sampling.sampling_steps = "ddim", 1
        start = time.perf_counter()
        with torch.no_grad():
            task.forecast_rows(inputs, [torch.Generator().manual_seed(0)], x_T=x_T)
        compile_s = time.perf_counter() - start

    def forecast(sampler: str, steps: int) -> tuple[torch.Tensor, float]:
        task.sampling.sampler, task.sampling.sampling_steps = sampler, steps
        start = time.perf_counter()
        with torch.no_grad():
            out = task.forecast_rows(inputs, rows, x_T=x_T).clamp(0, 1)
        return out, time.perf_counter() - start

    reference, seconds = forecast("ddim", args.sample_steps)
    result = {"sample_s": seconds, "sample_steps": args.sample_steps, "sampler": "ddim", "fast": None,
              "compile_warmup_s": compile_s}
    for steps in [s for s in FAST_STEPS if s < args.sample_steps]:
        fast, fast_seconds = forecast("dpmpp_2m", steps)
        mad = float((fast - reference).abs().mean())
        if mad <= 0.02:
            result["fast"] = {"sampler": "dpmpp_2m", "sample_steps": steps, "sample_s": fast_seconds,
                              "mean_abs_diff_vs_ddim250": mad}
            break
    return result


def measure_unet_calls(args) -> dict:
    """Denoiser calls of ours and the official U-Net alternated in one process (robust to machine load)."""
    torch.manual_seed(0)
    task = build_ours(args.config, args.in_frames, args.out_frames, args.model_arg).eval()
    official = build_official(args.official_repo, args.model, args.in_frames, args.out_frames, args.size).eval()
    x = torch.randn(1, args.in_frames, 1, args.size, args.size)
    inputs = torch.rand_like(x)
    with torch.no_grad():
        mean = official.backbone_net.predict(inputs)[0] * 2 - 1
        contexts = official.ctx_net.scan_ctx(torch.cat([inputs * 2 - 1, mean], dim=1))[0]
        features = task.net.segment_features(task.net.encode(inputs * 2 - 1, mean))
    t, index = torch.tensor([500]), torch.tensor([1])
    unet = task._sampling_unet()  # compiled with --model-arg compile_denoiser=true
    calls = {"official": lambda: official.model(x, t, cond=x, ctx=contexts, idx=index),
             "ours": lambda: task.net.denoise(x, t, x, features, 1, unet=unet)}
    if unet is not None:  # the same U-Net uncompiled, for the compiled / eager ratio
        calls["ours_eager"] = lambda: task.net.denoise(x, t, x, features, 1)
    times: dict[str, list[float]] = {name: [] for name in calls}
    warmup: dict[str, float] = {}
    with torch.no_grad():
        for name, call in calls.items():  # warm-up (and the compile, if any), not counted
            start = time.perf_counter()
            call()
            warmup[name] = time.perf_counter() - start
        for _ in range(args.rounds):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {"unet_call_s": best["ours"], "official_unet_call_s": best["official"],
              "unet_call_ratio_to_official": best["ours"] / best["official"],
              "unet_call_median_ratio_to_official": median["ours"] / median["official"], "rounds": args.rounds,
              "first_call_s": warmup["ours"]}
    if "ours_eager" in calls:
        result |= {"eager_unet_call_s": best["ours_eager"],
                   "compiled_to_eager_ratio": best["ours"] / best["ours_eager"],
                   "compiled_to_eager_median_ratio": median["ours"] / median["ours_eager"]}
        with torch.no_grad():
            result["compiled_max_abs_diff"] = float((calls["ours"]() - calls["ours_eager"]()).abs().max())
    return result


def measure_attention(args) -> dict:
    from nowcast_pl.layers.attention import PixelSelfAttention
    from nowcast_pl.models.raindiff.tokenwise_attention import TokenwiseAttention
    torch.manual_seed(0)
    layer = (TokenwiseAttention(64, args.variant) if args.attention == "tokenwise"
             else PixelSelfAttention(64, heads=1, dim_head=64)).eval()
    x = torch.randn(1, 64, args.side_tokens, args.side_tokens)
    base = _peak_rss_gb()
    with torch.no_grad():
        start = time.perf_counter()
        layer(x)
        seconds = time.perf_counter() - start
    return {"time_s": seconds, "peak_rss_increase_gb": _peak_rss_gb() - base}


def _run_worker(*extra: str) -> dict:
    command = [sys.executable, __file__, "--worker", *extra]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def attention_scaling(variant: str, memory_gb: float) -> list[dict]:
    rows = []
    for side in (64, 128, 256, 512):
        for attention in ("tokenwise", "softmax"):
            n = side * side
            row = {"tokens": n, "map": f"{side}x{side}", "attention": attention}
            score_gb = n * n * 4 / 2**30
            if attention == "softmax" and score_gb > memory_gb:
                row["skipped"] = f"the {n}x{n} score matrix needs {score_gb:.0f} GB"
            else:
                row |= _run_worker("--measure", "attention", "--attention", attention, "--side-tokens", str(side),
                                   "--variant", variant)
            rows.append(row)
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs/raindiff_shanghai.yaml")
    parser.add_argument("--official-repo", type=Path, default=None)
    parser.add_argument("--what", choices=("train", "sample", "all", "twa", "unet", "train_in_turn",
                                               "train_profile"), default="all")
    parser.add_argument("--rounds", type=int, default=5,
                        help="alternating rounds of --what unet / train_in_turn / train_profile")
    parser.add_argument("--in-frames", type=int, default=5)
    parser.add_argument("--out-frames", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--sample-steps", type=int, default=250, help="DDIM steps of the timed sample")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="override one of the config's model.init_args for our model (repeatable)")
    parser.add_argument("--twa-memory-gb", type=float, default=4.0, help="largest softmax score matrix to run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("train", "sample", "attention", "unet", "train_in_turn",
                                              "train_profile"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=("ours", "official"), default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--attention", default="tokenwise", help=argparse.SUPPRESS)
    parser.add_argument("--side-tokens", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="released", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    args.config = args.config.resolve()
    init = model_args(args.config)
    args.model = args.model or ("raindiff" if init.get("tokenwise_attention", True) else "diffcast")
    if args.worker:
        measure = {"train": measure_train, "sample": measure_sample, "attention": measure_attention,
                   "unet": measure_unet_calls, "train_in_turn": measure_train_in_turn,
                   "train_profile": measure_train_profile}[args.measure]
        print(json.dumps(measure(args)))
        return
    common = ["--config", str(args.config), "--in-frames", str(args.in_frames), "--out-frames", str(args.out_frames),
              "--size", str(args.size), "--train-steps", str(args.train_steps), "--model", args.model,
              "--sample-steps", str(args.sample_steps),
              *(f"--model-arg={item}" for item in args.model_arg)]
    if args.official_repo is not None:
        common += ["--official-repo", str(args.official_repo.resolve())]
    sides = ["ours"] + (["official"] if args.official_repo is not None else [])
    result: dict = {"config": str(args.config.relative_to(REPO)), "model": args.model,
                    "setting": f"batch 1, {args.size}x{args.size}, {args.in_frames}->{args.out_frames}, fp32, CPU",
                    "load_average_at_start": list(os.getloadavg()),
                    "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"}
    for side in sides:
        target = result if side == "ours" else result.setdefault("official", {})
        for what in ("train", "sample"):
            if args.what in (what, "all"):
                target |= _run_worker("--measure", what, "--side", side, *common)
    if args.what in ("unet", "train_in_turn", "train_profile"):
        result |= _run_worker("--measure", args.what, "--rounds", str(args.rounds), *common)
    if args.what == "twa":
        result["twa_vs_softmax"] = attention_scaling(init.get("variant", "paper"), args.twa_memory_gb)
    if not result.get("official", True):
        del result["official"]  # in-turn measurements report both sides at the top level
    if "official" in result:
        for key in ("train_step_s", "train_peak_rss_gb", "sample_s"):
            if key in result and key in result["official"]:
                result[f"{key}_ratio_to_official"] = result[key] / result["official"][key]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    from stldm_dispatch import stldm_argv  # noqa: PLC0415  (benchmarks/ is on sys.path when run as a script)

    if (stldm_args := stldm_argv(sys.argv[1:])) is not None:
        from cost_stldm import main as stldm_main  # noqa: PLC0415  (benchmarks/ is on sys.path when run as a script)

        stldm_main(stldm_args)
    else:
        main()
