"""GPU check of the paper configs: train-step time and memory, ``torch.compile``, sampler cost, DDP scaling.

For each paper config (RainDiff and DiffCast on Shanghai, STLDM on SEVIR), on a synthetic store of the paper's
frame size and frame counts written by :func:`nowcast_pl.data.synthetic.write_synthetic_store`:

- training: seconds per optimiser step after a warm-up and peak memory (``torch.cuda.max_memory_allocated``;
  on CPU the process peak RSS), in ``32-true`` and ``bf16-mixed``, and in ``32-true`` with ``torch.compile``
  of the task's ``training_loss`` (forward + loss; backward through AOTAutograd), whose first steps compile;
- sampling: seconds per forecast at the paper's sampler (RainDiff / DiffCast DDIM 250, STLDM guided DDIM 20),
  the same with ``compile_denoiser`` (RainDiff / DiffCast only), and a search over DPM-Solver++(2M) step counts
  for the first whose forecast (from the same noise: members are seeded by window and member) is within
  ``--tolerance`` mean absolute difference (in [0, 1] units) of the paper sampler's;
- DDP: ``nowcast fit`` in a subprocess on 1 device and on every visible GPU (``--trainer.strategy ddp``),
  training samples/s of the steps after a warm-up.

Models are built through the LightningCLI (``build_cli(..., run=False)``) from the shipped YAML and driven by
``Trainer.fit`` / ``Trainer.predict``. Weights are those of initialisation plus the few timed training steps
(no checkpoint is loaded), so the sampler search checks the procedure and the cost, not the sampler choice
for a trained model. A ``--budget-s`` guard skips what remains once the budget is spent and says so.
``--smoke`` runs the same code on CPU with the ``configs/tiny/`` models, batches of 2 at 16 x 16, one timed step,
1-2 sampling steps, the ``eager`` compile backend and DDP over 2 gloo processes.

Usage: ``python -m benchmarks.gpu_check [--output benchmarks/results/gpu_check.json] [--budget-s 540]``;
``python -m benchmarks.gpu_check --smoke --output /tmp/gpu_check_smoke.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback

from benchmarks.harness import REPO, output_argument, peak_rss_gb, write_result
from nowcast_pl.cli import build_cli
from nowcast_pl.data.synthetic import SyntheticRadarConfig, write_synthetic_store

# name -> (paper config, tiny config for --smoke, paper sampler, paper steps, frames in + out, frame size)
MODELS = {
    "raindiff": ("configs/raindiff_shanghai.yaml", "configs/tiny/raindiff.yaml", "ddim", 250, 25, 128),
    "diffcast": ("configs/diffcast_shanghai.yaml", "configs/tiny/diffcast.yaml", "ddim", 250, 25, 128),
    "stldm": ("configs/stldm_sevir.yaml", "configs/tiny/stldm.yaml", "ddim", 20, 25, 128),
}
FAST_SAMPLER = "dpmpp_2m"
ALL_SPLITS = {"after": None, "until": None, "events": None, "event_pattern": None}


class StepTimer(Callback):
    """Times the optimiser steps after ``warmup`` (device synchronised) and reads peak memory over them.

    With ``output`` set (the DDP subprocess), rank 0 writes ``{"steps", "seconds", "samples"}`` there.
    """

    def __init__(self, warmup: int, output: str | None = None) -> None:
        self.warmup, self.output = warmup, output
        self.start: float | None = None
        self.seconds = math.nan
        self.samples = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _synchronize()
        if trainer.global_step == self.warmup:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            self.start = time.perf_counter()
        elif self.start is not None:
            self.samples += batch["inputs"].shape[0] * trainer.world_size

    def on_train_end(self, trainer, pl_module) -> None:
        if self.start is None:
            return
        self.seconds = time.perf_counter() - self.start
        if self.output and trainer.is_global_zero:
            Path(self.output).write_text(json.dumps({"steps": trainer.global_step - self.warmup,
                                                     "seconds": self.seconds, "samples": self.samples}))


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_memory_gib() -> tuple[float, str]:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30, "torch.cuda.max_memory_allocated"
    return peak_rss_gb(), "process peak RSS (CPU, whole run so far)"


class Check:
    """Settings, the elapsed-time budget and the commands of one run."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args, self.folder = args, folder
        self.started = time.perf_counter()
        self.commands: list[str] = []
        self.accelerator = "cpu" if args.smoke or not torch.cuda.is_available() else "gpu"

    def over_budget(self) -> str | None:
        used = time.perf_counter() - self.started
        if used <= self.args.budget_s:
            return None
        return f"budget: {used:.0f} s used of --budget-s {self.args.budget_s:.0f}"

    def config_args(self, name: str, store: Path) -> list[str]:
        paper, tiny = MODELS[name][:2]
        split = dict(ALL_SPLITS, stride=self.args.stride)
        splits = {"train": split, "val": split, "test": split, "predict": dict(ALL_SPLITS, stride=10**6)}
        extra = []
        if self.args.smoke:  # 2 windows of 16 x 16 per batch, read in the main process
            extra = ["--data.init_args.num_workers", "0", "--data.init_args.frame_size", "16",
                     "--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2"]
        return ["--config", str(REPO / (tiny if self.args.smoke else paper)), "--data.init_args.store", str(store),
                "--data.init_args.splits", json.dumps(splits), "--trainer.logger", "false", *extra]

    def build(self, name: str, store: Path, overrides: list[str] = ()) -> Any:
        """The task and data module of ``name`` through the CLI (no sub-command runs)."""
        args = [*self.config_args(name, store), "--trainer.accelerator", self.accelerator, *overrides]
        self.commands.append("build_cli(run=False) " + shlex.join(args))
        cli = build_cli(args, run=False)
        return cli.model, cli.datamodule

    def trainer(self, **kwargs: Any) -> Trainer:
        return Trainer(accelerator=self.accelerator, devices=1, logger=False, enable_checkpointing=False,
                       enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                       num_sanity_val_steps=0, **kwargs)


def write_store(check: Check, name: str) -> Path:
    """A synthetic store of the paper's frame size (32 with ``--smoke``); events of a window + 15 frames, so
    that each event holds 4 training windows at the default stride 5."""
    frames, size = MODELS[name][4:6]
    size = 32 if check.args.smoke else size
    frames = 16 if check.args.smoke else frames + 15
    path = check.folder / f"synthetic_{size}_{frames}.zarr"
    if not path.exists():
        config = SyntheticRadarConfig(height=size, width=size, n_frames=frames)
        write_synthetic_store(path, n_events=check.args.events, config=config, seed=0)
        check.commands.append(f"write_synthetic_store({str(path)!r}, n_events={check.args.events}, "
                              f"config=SyntheticRadarConfig(height={size}, width={size}, n_frames={frames}))")
    return path


def train_cost(check: Check, model, datamodule, precision: str, compiled: bool) -> dict:
    """Seconds per optimiser step after ``--warmup`` steps, and peak memory over the timed steps."""
    steps, warmup = check.args.train_steps, check.args.warmup
    timer = StepTimer(warmup)
    if compiled:
        model.training_loss = torch.compile(model.training_loss, backend=check.args.compile_backend)
    try:
        check.trainer(precision=precision, max_steps=warmup + steps, callbacks=[timer]).fit(model, datamodule)
    finally:
        if compiled:
            del model.training_loss  # back to the class method
    memory, source = _peak_memory_gib()
    return {"precision": precision, "compiled": compiled, "warmup_steps": warmup, "steps": steps,
            "s_per_step": timer.seconds / steps, "peak_memory_gib": memory, "peak_memory_source": source}


def forecasts(check: Check, model, datamodule) -> tuple[torch.Tensor, float]:
    """Forecasts of the first predict batch and seconds per forecast (one window, one member)."""
    trainer = check.trainer(precision="32-true", limit_predict_batches=1)
    _synchronize()
    start = time.perf_counter()
    rows = trainer.predict(model, datamodule)
    _synchronize()
    seconds = time.perf_counter() - start
    forecast = torch.cat([row["forecast"] for row in rows]).float().cpu()
    return forecast, seconds / (forecast.shape[0] * forecast.shape[1])


def sampler_model(check: Check, name: str, store: Path, state: dict, sampler: str, steps: int,
                  compile_denoiser: bool = False) -> tuple[Any, Any]:
    overrides = ["--model.init_args.sampler", sampler, "--model.init_args.sampling_steps", str(steps)]
    if compile_denoiser:
        overrides += ["--model.init_args.compile_denoiser", "true"]
    model, datamodule = check.build(name, store, overrides)
    model.load_state_dict(state)
    if compile_denoiser:
        model.compile_backend = check.args.compile_backend  # class attribute documented as the backend
    return model, datamodule


def sample_cost(check: Check, name: str, store: Path, state: dict) -> dict:
    """Paper sampler, its compiled twin and the fast-sampler search, all from the same noise."""
    sampler, steps = MODELS[name][2], (2 if check.args.smoke else MODELS[name][3])
    result: dict[str, Any] = {}
    forecasts(check, *sampler_model(check, name, store, state, sampler, 1))  # warm-up: CUDA context, allocator
    model, datamodule = sampler_model(check, name, store, state, sampler, steps)
    paper, seconds = forecasts(check, model, datamodule)
    result["paper"] = {"sampler": sampler, "steps": steps, "s_per_forecast": seconds}
    search = []
    for fast_steps in check.args.fast_steps:
        if reason := check.over_budget():
            result["fast_search_stopped"] = reason
            break
        model, datamodule = sampler_model(check, name, store, state, FAST_SAMPLER, fast_steps)
        forecast, seconds = forecasts(check, model, datamodule)
        mad = float((forecast - paper).abs().mean())
        search.append({"sampler": FAST_SAMPLER, "steps": fast_steps, "s_per_forecast": seconds,
                       "mean_abs_diff": mad, "within_tolerance": mad <= check.args.tolerance})
        if mad <= check.args.tolerance:
            break
    result["fast_search"] = search
    if search:
        speedup = result["paper"]["s_per_forecast"] / search[-1]["s_per_forecast"]
        result["fast"] = dict(search[-1], speedup_vs_paper=speedup)
    result["tolerance"] = check.args.tolerance
    if not hasattr(model, "compile_denoiser"):
        result["compiled"] = {"skipped": f"{type(model).__name__} has no compile_denoiser setting"}
    elif reason := check.over_budget():
        result["compiled"] = {"skipped": reason}
    else:
        model, datamodule = sampler_model(check, name, store, state, sampler, steps, compile_denoiser=True)
        forecasts(check, model, datamodule)  # compiles
        _, seconds = forecasts(check, model, datamodule)
        result["compiled"] = {"sampler": sampler, "steps": steps, "backend": check.args.compile_backend,
                              "s_per_forecast": seconds,
                              "speedup_vs_eager": result["paper"]["s_per_forecast"] / seconds}
    return result


def check_model(check: Check, name: str) -> dict:
    store = write_store(check, name)
    model, datamodule = check.build(name, store)
    result: dict[str, Any] = {"config": MODELS[name][1 if check.args.smoke else 0], "task": type(model).__name__,
                              "parameters": sum(p.numel() for p in model.parameters()),
                              "batch_size": datamodule.batch_size, "train": {}}
    runs = (("32-true", False), ("bf16-mixed", False), ("32-true", True))
    for precision, compiled in runs:
        key = f"{precision}{'_compiled' if compiled else ''}"
        if reason := check.over_budget():
            result["train"][key] = {"skipped": reason}
            continue
        try:
            result["train"][key] = train_cost(check, model, datamodule, precision, compiled)
        except Exception as error:  # one failing measurement must not lose the others
            result["train"][key] = {"skipped": f"error: {type(error).__name__}: {error}"[:500]}
    train = result["train"]
    if "s_per_step" in train["32-true"] and "s_per_step" in train["32-true_compiled"]:
        result["train"]["compile_speedup"] = train["32-true"]["s_per_step"] / train["32-true_compiled"]["s_per_step"]
    if "s_per_step" in train["32-true"] and "s_per_step" in train["bf16-mixed"]:
        result["train"]["bf16_speedup"] = train["32-true"]["s_per_step"] / train["bf16-mixed"]["s_per_step"]
    if reason := check.over_budget():
        result["sample"] = {"skipped": reason}
    else:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        result["sample"] = sample_cost(check, name, store, state)
    return result


def ddp_run(check: Check, name: str, store: Path, devices: int) -> dict:
    """``nowcast fit`` on ``devices`` processes; training samples/s after the warm-up steps."""
    output = check.folder / f"ddp_{devices}.json"
    timer = check.folder / f"ddp_timer_{devices}.yaml"
    timer.write_text(yaml.safe_dump({"trainer": {"callbacks": [{
        "class_path": "benchmarks.gpu_check.StepTimer",
        "init_args": {"warmup": check.args.warmup, "output": str(output)}}]}}))
    command = [sys.executable, "-m", "nowcast_pl", "fit", *check.config_args(name, store), "--config", str(timer),
               "--runs_root", str(check.folder / "runs"), "--run_name", f"ddp{devices}",
               "--trainer.accelerator", check.accelerator, "--trainer.devices", str(devices),
               "--trainer.strategy", "ddp" if devices > 1 else "auto", "--trainer.limit_val_batches", "0",
               "--trainer.max_steps", str(check.args.warmup + check.args.ddp_steps)]
    check.commands.append(shlex.join(command))
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    if check.accelerator == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=check.args.budget_s + 60)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    timing = json.loads(output.read_text())
    return {"devices": devices, **timing, "samples_per_s": timing["samples"] / timing["seconds"]}


def check_ddp(check: Check) -> dict:
    name = check.args.ddp_model
    devices = 2 if check.args.smoke else max(1, torch.cuda.device_count())
    result: dict[str, Any] = {"model": name, "devices": devices}
    if reason := check.over_budget():
        return dict(result, skipped=reason)
    store = write_store(check, name)
    runs = [ddp_run(check, name, store, 1)]
    if devices > 1:
        runs.append(ddp_run(check, name, store, devices))
    result["runs"] = runs
    result["speedup_vs_1"] = runs[-1]["samples_per_s"] / runs[0]["samples_per_s"]
    return result


def accelerator() -> dict:
    """The device the check ran on and the CUDA settings that change its numbers (beside the harness's machine)."""
    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "gpus": torch.cuda.device_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None, "python": platform.python_version(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "platform": platform.platform(), "cpus": os.cpu_count()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    output_argument(parser)
    parser.set_defaults(output=REPO / "benchmarks/results/gpu_check.json")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--budget-s", type=float, default=540.0, help="skip what remains after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny configs, 1 step of everything")
    parser.add_argument("--warmup", type=int, default=3, help="untimed optimiser steps before the timed ones")
    parser.add_argument("--train-steps", type=int, default=10, help="timed optimiser steps")
    parser.add_argument("--ddp-steps", type=int, default=10, help="timed optimiser steps of each DDP run")
    parser.add_argument("--ddp-model", choices=sorted(MODELS), help="model of the DDP runs (first of --models)")
    parser.add_argument("--no-ddp", action="store_true", help="skip the DDP runs")
    parser.add_argument("--fast-steps", type=int, nargs="+", default=[10, 15, 20, 25, 35, 50],
                        help=f"{FAST_SAMPLER} step counts tried in order")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="mean absolute difference to the paper sampler's forecast, [0, 1] units")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--events", type=int, default=12, help="synthetic events in the store")
    parser.add_argument("--stride", type=int, default=5, help="training window stride (frames)")
    args = parser.parse_args(argv)
    args.ddp_model = args.ddp_model or args.models[0]
    if args.smoke:
        args.warmup, args.train_steps, args.ddp_steps, args.events = 1, 1, 1, 3
        args.fast_steps, args.compile_backend = [1, 2], "eager"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        check = Check(args, Path(tmp))
        result: dict[str, Any] = {"benchmark": "gpu_check", "smoke": args.smoke, "accelerator": accelerator(),
                                  "budget_s": args.budget_s,
                                  "weights": "initialisation + the timed training steps (no checkpoint)",
                                  "models": {}}
        for name in args.models:
            result["models"][name] = check_model(check, name)
            print(json.dumps({name: result["models"][name]}), flush=True)
        result["ddp"] = {"skipped": "--no-ddp"} if args.no_ddp else check_ddp(check)
        result["commands"] = check.commands
        result["elapsed_s"] = time.perf_counter() - check.started
    return write_result(result, args.output, module="benchmarks.gpu_check", argv=argv)


if __name__ == "__main__":
    main()
