"""CPU cost of the pysteps baselines per window and member: Lagrangian extrapolation and STEPS.

Forecasts of blocky rain cells (−10…60 dBZ, 5 observed frames, moving 2 px per frame) at several frame sizes;
one JSON object per (task, size) with wall and process-CPU seconds per forecast row (one window, one
member) and the peak resident memory of the process, then all rows in one JSON object. Usage:
``python -m benchmarks.baselines_cost [--sizes 64 128 256 --out-frames 12 --rows 4 --output FILE]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmarks.harness import output_argument, peak_rss_gb, write_result
from nowcast_pl.models.baselines import ExtrapolationTask, StepsTask


def rain_cells(size: int, frames: int, rows: int) -> torch.Tensor:
    """(rows, frames, 1, size, size) in [0, 1]."""
    rng = np.random.default_rng(0)
    cells = np.kron(rng.random((size // 8 + frames, size // 8 + frames)), np.ones((8, 8))) * 70 - 20
    window = np.stack([np.roll(cells, 2 * t, axis=1)[:size, :size] for t in range(frames)])
    return torch.from_numpy((np.clip(window, -10, 60) + 10) / 70).float()[None, :, None].repeat(rows, 1, 1, 1, 1)


def measure(task_name: str, size: int, out_frames: int, rows: int, cascade_levels: int) -> dict:
    common = {"in_frames": 5, "out_frames": out_frames, "value_range": (-10.0, 60.0), "units": "dBZ",
              "time_step_minutes": 5.0, "thresholds": [20.0], "protocol": "earthformer"}
    inputs = rain_cells(size, 5, rows)
    if task_name == "steps":
        task = StepsTask(cascade_levels=cascade_levels, pixel_size_km=1.0, **common)
        run = lambda: task.forecast_rows(inputs, [torch.Generator().manual_seed(i) for i in range(rows)])  # noqa: E731
    else:
        task = ExtrapolationTask(**common)
        run = lambda: task.forecast(inputs)  # noqa: E731
    run()  # first call: imports and caches are not part of the rate
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"task": task_name, "frame_size": size, "out_frames": out_frames, "cascade_levels": cascade_levels,
            "rows": rows, "wall_s_per_row": wall / rows, "cpu_s_per_row": cpu / rows,
            "peak_rss_mb": peak_rss_gb() * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--out-frames", type=int, default=12)
    parser.add_argument("--rows", type=int, default=4)
    output_argument(parser)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        for task_name in ("extrapolation", "steps"):
            rows.append(measure(task_name, size, args.out_frames, args.rows, 6 if size >= 128 else 4))
            print(json.dumps(rows[-1]), flush=True)
    write_result({"results": rows}, args.output, module="benchmarks.baselines_cost", argv=None)


if __name__ == "__main__":
    main()
