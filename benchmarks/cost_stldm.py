"""Cost of STLDM at a paper config: parameters, one training step, one guided sample (fp32, batch 1, CPU).

Prints one JSON object: ``params``, ``train_step_s`` (median of the timed steps after warm-up: loss,
backward, clip 1.0, AdamW), ``train_peak_rss_gb``, ``sample_s`` (one guided DDIM sample, w = 1, including the
Translator pass and the decode), ``sample_steps``, ``fastest_sampler`` (the cheapest core sampler whose
decoded sample stays within 2% relative mean absolute difference of the 20-step DDIM's at the same noise) and,
with ``--official-repo``, the same keys under ``official`` for the released code measured the same way
(``model_setup(config, cfg_str=1.0)`` for sampling, as ``ens_gen.py --c_str 1.0``). Every measurement runs
in a fresh process, one after another, so peak RSS is its own. With ``--alternate ROUNDS``, one more process
calls ours and the official code in turn (``alternating``): on a machine whose speed drifts between the
isolated runs, these ratios are the ones to trust for time.

    python benchmarks/cost_stldm.py --config configs/stldm_hko7.yaml [--official-repo PATH --alternate 3] [--what all]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = [("dpmpp_2m", 5), ("ddim", 5), ("dpmpp_2m", 8), ("ddim", 8), ("dpmpp_2m", 10), ("ddim", 10),
              ("dpmpp_2m", 15), ("ddim", 15)]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def load_config(path: Path) -> tuple[dict, dict]:
    """``model.init_args`` and ``data.init_args`` of a config as ``nowcast fit`` resolves them (includes, links)."""
    from nowcast_pl.config import read_config  # noqa: PLC0415  (keeps --help and the official side light)

    config = read_config([path], build=()).config
    return config.model.init_args.as_dict(), config.data.init_args.as_dict()


def build_ours(config: Path):
    from nowcast_pl.models.stldm.task import STLDMTask

    model_args, data = load_config(config)
    task = STLDMTask(**model_args)  # in_frames and out_frames linked from the data section
    return task, data["in_frames"], data["out_frames"], int(data.get("frame_size") or 128)


def batch_of(t_in: int, t_out: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(1, t_in, 1, size, size, generator=generator),
            torch.rand(1, t_out, 1, size, size, generator=generator))


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``repeats`` calls (CPU time is less sensitive to other load)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def time_train(step, steps: int) -> dict:
    wall, cpu = timed(step, steps + 1)
    return {"train_step_s": round(statistics.median(wall[1:]), 3), "train_step_min_s": round(min(wall[1:]), 3),
            "train_step_cpu_s": round(statistics.median(cpu[1:]), 3), "train_step_first_s": round(wall[0], 3),
            "train_peak_rss_gb": round(peak_rss_gb(), 3)}


def time_sample(sample, repeats: int) -> dict:
    sample()
    wall, cpu = timed(sample, repeats)
    return {"sample_s": round(statistics.median(wall), 3), "sample_min_s": round(min(wall), 3),
            "sample_cpu_s": round(statistics.median(cpu), 3)}


def ours_train_step(config: Path):
    """(task, one training step of ours: loss, backward, clip 1.0, AdamW)."""
    task, t_in, t_out, size = build_ours(config)
    x, y = batch_of(t_in, t_out, size)
    optimizer = torch.optim.AdamW(task.param_groups(), lr=1e-4, weight_decay=0.01)
    task.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        task.training_loss({"inputs": x, "targets": y})["loss"].backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        optimizer.step()

    return task, step


def measure_ours_train(config: Path, steps: int) -> dict:
    task, step = ours_train_step(config)
    return {"params": sum(p.numel() for p in task.parameters())} | time_train(step, steps)


def ours_sampler(config: Path):
    """(task, inputs, fixed latent noise, one guided 20-step DDIM sample of ours)."""
    task, t_in, t_out, size = build_ours(config)
    task.eval()
    x, _ = batch_of(t_in, t_out, size)
    latent = (1, t_out, task.net.vae.latent_channels, size // 4, size // 4)
    x_T = torch.randn(*latent, generator=torch.Generator().manual_seed(1))
    task.sampling.sampler, task.sampling.sampling_steps, task.sampling.guidance_scale = "ddim", 20, 1.0
    return task, x, x_T, torch.no_grad()(lambda: task.sample_frames(x, None, x_T=x_T))


@torch.no_grad()
def measure_ours_sample(config: Path, repeats: int, search: bool) -> dict:
    task, x, x_T, sample = ours_sampler(config)
    result = {"params": sum(p.numel() for p in task.parameters())}
    result |= time_sample(sample, repeats)
    result |= {"sample_steps": 20, "sample_guidance": 1.0, "sample_peak_rss_gb": round(peak_rss_gb(), 3)}
    if search:
        reference, _ = task.sample_frames(x, None, x_T=x_T)
        result["fastest_sampler"] = fastest_sampler(task, x, x_T, reference)
    return result


def fastest_sampler(task, x: torch.Tensor, x_T: torch.Tensor, reference: torch.Tensor) -> dict | None:
    """Cheapest (sampler, steps) within 2% relative MAD of the 20-step DDIM sample, with its latency."""
    scale = float(reference.abs().mean())
    tried = []
    for sampler, steps in CANDIDATES:
        task.sampling.sampler, task.sampling.sampling_steps = sampler, steps
        start = time.perf_counter()
        sample, _ = task.sample_frames(x, None, x_T=x_T)
        seconds = time.perf_counter() - start
        relative = float((sample - reference).abs().mean()) / scale
        tried.append({"sampler": sampler, "steps": steps, "relative_mad": round(relative, 5),
                      "sample_s": round(seconds, 3)})
        if relative <= 0.02:
            return tried[-1] | {"tried": tried}
    return {"sampler": None, "tried": tried}


def import_official(repo: Path):
    sys.path.insert(0, str(REPO))
    from benchmarks.parity_stldm import import_official as load  # noqa: PLC0415

    return load(repo)


OFFICIAL_CONFIGS = {(5, 20): "STLDM_HKO", (13, 12): "STLDM_SEVIR"}


def official_model(repo: Path, config: Path, cfg_str: float | None):
    model_module, config_module = import_official(repo)
    _, data = load_config(config)
    name = OFFICIAL_CONFIGS[(data["in_frames"], data["out_frames"])]
    return model_module.model_setup(getattr(config_module, name), cfg_str=cfg_str), data


def official_train_step(repo: Path, config: Path):
    """(model, one training step of the released code, as ours is timed)."""
    model, data = official_model(repo, config, None)
    x, y = batch_of(data["in_frames"], data["out_frames"], int(data.get("frame_size") or 128))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        optimizer.zero_grad()
        sum(model.compute_loss(x, y)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return model, step


def measure_official_train(repo: Path, config: Path, steps: int) -> dict:
    model, step = official_train_step(repo, config)
    return {"params": sum(p.numel() for p in model.parameters())} | time_train(step, steps)


def official_sampler(repo: Path, config: Path):
    """(model, one guided sample of the released code: ``model_setup(..., cfg_str=1.0)``, as ens_gen.py)."""
    model, data = official_model(repo, config, 1.0)
    model.eval()
    x, _ = batch_of(data["in_frames"], data["out_frames"], int(data.get("frame_size") or 128))
    return model, torch.no_grad()(lambda: model(x))


@torch.no_grad()
def measure_official_sample(repo: Path, config: Path, repeats: int) -> dict:
    model, sample = official_sampler(repo, config)
    result = {"params": sum(p.numel() for p in model.parameters())} | time_sample(sample, repeats)
    return result | {"sample_steps": model.sampling_timesteps, "sample_guidance": 1.0,
                     "sample_peak_rss_gb": round(peak_rss_gb(), 3)}


def measure_alternating(args: argparse.Namespace) -> dict:
    """Ours and the released code called in turn, ``--alternate`` rounds after one warm-up call each, in one
    process: time ratios that hold when the machine's speed drifts between isolated runs. The fastest call of
    each side is compared (peak RSS is not per side here; the isolated runs give it)."""
    whats = ("train", "sample") if args.what == "all" else (args.what,)
    result = {"rounds": args.alternate}
    for what in whats:
        if what == "train":
            calls = {"ours": ours_train_step(args.config)[1],
                     "official": official_train_step(args.official_repo, args.config)[1]}
        else:
            calls = {"ours": ours_sampler(args.config)[3],
                     "official": official_sampler(args.official_repo, args.config)[1]}
        times: dict[str, list[float]] = {name: [] for name in calls}
        for round_ in range(args.alternate + 1):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                if round_:
                    times[name].append(round(time.perf_counter() - start, 3))
        key = "train_step" if what == "train" else "sample"
        result[f"{key}_s"] = {name: values for name, values in times.items()}
        result[f"{key}_min_s_ratio"] = round(min(times["ours"]) / min(times["official"]), 3)
        result[f"{key}_median_s_ratio"] = round(statistics.median(times["ours"])
                                                / statistics.median(times["official"]), 3)
    return result


def run_isolated(args: argparse.Namespace, who: str, what: str) -> dict:
    """One measurement in a fresh interpreter (its own peak RSS)."""
    command = [sys.executable, __file__, "--config", str(args.config), "--measure", f"{who}:{what}",
               "--steps", str(args.steps), "--repeats", str(args.repeats)]
    if args.official_repo:
        command += ["--official-repo", str(args.official_repo)]
    if args.no_search:
        command.append("--no-search")
    if who == "both":
        command += ["--alternate", str(args.alternate), "--what", args.what]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    who, what = args.measure.split(":")
    if who == "both":
        return measure_alternating(args)
    if who == "ours":
        return (measure_ours_train(args.config, args.steps) if what == "train"
                else measure_ours_sample(args.config, args.repeats, not args.no_search))
    if what == "train":
        return measure_official_train(args.official_repo, args.config, args.steps)
    return measure_official_sample(args.official_repo, args.config, args.repeats)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="STLDM cost: parameters, training step, guided sample (CPU)")
    parser.add_argument("--config", type=Path, required=True, help="e.g. configs/stldm_hko7.yaml")
    parser.add_argument("--official-repo", type=Path, help="checkout of sqfoo/stldm_official to measure too")
    parser.add_argument("--what", choices=("train", "sample", "all"), default="all")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps after one warm-up step")
    parser.add_argument("--repeats", type=int, default=2, help="timed samples after one warm-up sample")
    parser.add_argument("--no-search", action="store_true", help="skip the fastest-sampler search")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    parser.add_argument("--alternate", type=int, default=0, metavar="ROUNDS",
                        help="with --official-repo: also time ours and the official code in turn, ROUNDS rounds, "
                             "in one process")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.measure:
        result = measure(args)
        print(json.dumps(result))
        return result
    if str(REPO) not in sys.path:  # also when dispatched from benchmarks/model_cost.py
        sys.path.insert(0, str(REPO))
    from benchmarks.parity_stldm import machine, report  # noqa: PLC0415

    whats = ("train", "sample") if args.what == "all" else (args.what,)
    result: dict = {"model": "stldm", "config": str(args.config), "batch": 1, "dtype": "float32", "device": "cpu"}
    for what in whats:
        result |= run_isolated(args, "ours", what)
    if args.official_repo:
        result["official"] = {}
        for what in whats:
            result["official"] |= run_isolated(args, "official", what)
        for key in ("train_step_s", "train_step_min_s", "train_step_cpu_s", "train_peak_rss_gb", "sample_s",
                    "sample_min_s", "sample_cpu_s"):
            if key in result and key in result["official"]:
                result[f"{key}_ratio"] = round(result[key] / result["official"][key], 3)
    if args.alternate and args.official_repo:
        result["alternating"] = run_isolated(args, "both", "alternate")
    result["command"] = " ".join(["python benchmarks/cost_stldm.py", *(sys.argv[1:] if argv is None else argv)])
    result["machine"] = machine()
    return report(result, args.output)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
