"""DDP scaling on CPU: training samples/s of a small SimVP with 1 and 2 processes (gloo), printed as JSON.

Each process runs ``nowcast fit`` with one intra-op thread and the same per-process batch, so 2 processes
train twice the samples per optimiser step (weak scaling, as on a cluster); the speed-up is
samples/s(2) / samples/s(1) (target >= 1.6). Steps after a warm-up are timed from inside the training loop
(start-up, validation and checkpointing excluded). The load average before and after each run is recorded:
other work on the same cores distorts the result. GPU measurements (bf16 vs fp32, ``torch.compile``, peak
memory) are not made by this script.

Usage: ``python -m benchmarks.ddp_scaling [--steps 40 --warmup 5 --frame-size 64 --output FILE.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from lightning.pytorch.callbacks import Callback

from benchmarks.harness import REPO, output_argument, write_result
from nowcast_pl.data import FrameEncoding, RadarStoreWriter, StoreMetadata

ENCODING = FrameEncoding(dtype="uint8", units="dBZ", quantity="reflectivity", long_name="reflectivity",
                         fill_value=255, scale_factor=70 / 255, add_offset=-10.0)


class StepTimer(Callback):
    """Writes ``{"steps", "seconds", "samples"}`` of the steps after ``warmup`` to ``output`` (rank 0)."""

    def __init__(self, output: str, warmup: int) -> None:
        self.output, self.warmup = output, warmup
        self.start: float | None = None
        self.samples = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif self.start is not None:
            self.samples += batch["inputs"].shape[0] * trainer.world_size

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.start is not None:
            seconds = time.perf_counter() - self.start
            Path(self.output).write_text(json.dumps({"steps": trainer.global_step - self.warmup,
                                                     "seconds": seconds, "samples": self.samples}))


def write_store(path: Path, frame_size: int, events: int = 16, frames: int = 40) -> None:
    """Moving random fields, one event per day."""
    rng = np.random.default_rng(0)
    metadata = StoreMetadata(title="ddp scaling", source="benchmarks", licence="CC0-1.0", citation="none",
                             time_step_seconds=300, pixel_size_m=1000.0)
    with RadarStoreWriter(path, frame_shape=(frame_size, frame_size), encoding=ENCODING, metadata=metadata,
                          overwrite=True) as writer:
        for event in range(events):
            start = np.datetime64("2020-01-01T00:00") + np.timedelta64(event, "D")
            field = rng.integers(0, 254, (frame_size, frame_size))
            values = np.stack([np.roll(field, t, axis=1) for t in range(frames)]).astype(np.uint8)
            writer.append_event(f"ev{event:03d}", start + np.arange(frames) * np.timedelta64(5, "m"), values)


def config(folder: Path, store: Path, batch_size: int) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "enable_progress_bar": False, "enable_model_summary": False,
                    "limit_val_batches": 0, "logger": False},
        "model": {"class_path": "nowcast_pl.models.simvp.SimVPTask", "init_args": {
            "hid_S": 16, "hid_T": 64, "N_S": 2, "N_T": 4, "thresholds": [20.0], "lr": 1e-3}},
        "data": {"class_path": "nowcast_pl.data.RadarDataModule", "init_args": {
            "store": str(store), "in_frames": 5, "out_frames": 5, "value_range": [-10.0, 60.0],
            "batch_size": batch_size, "splits": {"train": {"stride": 1}}}},
    }))
    return path


def run(processes: int, folder: Path, cfg: Path, steps: int, warmup: int) -> dict:
    output = folder / f"timing{processes}.json"
    timer = folder / f"timer{processes}.yaml"
    timer.write_text(yaml.safe_dump({"trainer": {"callbacks": [{
        "class_path": "benchmarks.ddp_scaling.StepTimer", "init_args": {"output": str(output), "warmup": warmup}}]}}))
    command = [sys.executable, "-m", "nowcast_pl", "fit", "--config", str(cfg), "--config", str(timer),
               "--runs_root", str(folder / "runs"), "--run_name", f"p{processes}",
               "--trainer.devices", str(processes), "--trainer.max_steps", str(steps + warmup),
               "--trainer.strategy", "ddp" if processes > 1 else "auto"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    load_before = os.getloadavg()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    timing = json.loads(output.read_text())
    return {"processes": processes, **timing, "samples_per_s": timing["samples"] / timing["seconds"],
            "load_average_before": load_before, "load_average_after": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed optimiser steps first")
    parser.add_argument("--frame-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=4, help="per process")
    output_argument(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_store(folder / "store.zarr", args.frame_size)
        cfg = config(folder, folder / "store.zarr", args.batch_size)
        runs = [run(n, folder, cfg, args.steps, args.warmup) for n in (1, 2)]
    result = {
        "benchmark": "ddp_scaling", "model": "SimVPTask hid_S=16 hid_T=64 N_T=4, 5->5 frames",
        "frame_size": args.frame_size, "batch_size_per_process": args.batch_size, "threads_per_process": 1,
        "runs": runs, "speedup_2_vs_1": runs[1]["samples_per_s"] / runs[0]["samples_per_s"], "target_speedup": 1.6,
    }
    write_result(result, args.output, module="benchmarks.ddp_scaling", argv=None)


if __name__ == "__main__":
    main()
