"""Seams and memory of tiled forecasts (:mod:`nowcast_pl.forecasting`).

1. Seams: tiny models with seeded, untrained weights forecast a 700 x 700 synthetic composite (smooth rain
   cells moving 2 px per frame, -10...60 dBZ) in 64 x 64 tiles: ``toy`` (the two-convolution diffusion model of
   ``tests/helpers/toy_diffusion.py``, DDIM, through the coherent-noise path), ``simvp`` (a tiny SimVP, deterministic)
   and, on request, ``raindiff`` (the ``configs/tiny/raindiff.yaml`` architecture; slow on a CPU). The figure
   is the mean |difference| of neighbouring pixels across tile borders against inside tiles
   (:func:`~nowcast_pl.forecasting.seams.seam_statistics`), blended as ``forecast`` does and, for contrast, with
   abutting tiles (overlap 0).
2. Memory: persistence through the same tiles on an OPERA-size 3800 x 4400 grid; peak traced NumPy memory and
   peak resident memory against the input and result sizes.

One JSON object with a row per measurement, also written to ``--output`` (default
``benchmarks/results/forecast_seams.json``). Usage:
``python -m benchmarks.forecast_seams [--models toy simvp --size 700 --tile 64 --members 2 --opera 3800 4400]``.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import torch

from benchmarks.harness import REPO, output_argument, peak_rss_gb, write_result
from nowcast_pl.forecasting import forecast, forecast_tiles, plan_tiles
from nowcast_pl.forecasting.seams import seam_statistics
from nowcast_pl.models.baselines import PersistenceTask
from nowcast_pl.models.raindiff import RainDiffTask
from nowcast_pl.models.simvp import SimVPTask
from nowcast_pl.tasks.base import NowcastTask
from tests.helpers.toy_diffusion import ToyDiffusionTask

RESULTS = REPO / "benchmarks" / "results" / "forecast_seams.json"
SCORING = {"thresholds": [20.0], "protocol": "pysteps", "value_range": (-10.0, 60.0), "units": "dBZ"}


def composite(height: int, width: int, frames: int) -> np.ndarray:
    """(frames, height, width) float32 dBZ: smooth rain cells moving 2 px per frame along x."""
    rng = np.random.default_rng(0)
    coarse = rng.random((height // 16 + 2, width // 16 + frames))
    field = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None, None], scale_factor=16, mode="bicubic",
                                            align_corners=False)[0, 0].numpy()
    dbz = np.clip(field * 90 - 35, -10, 60)
    return np.stack([dbz[:height, 2 * t:2 * t + width] for t in range(frames)]).astype(np.float32)


def tiny_model(name: str, steps: int) -> NowcastTask:
    """A tiny model with weights seeded by 0, 5 -> 10 frames."""
    torch.manual_seed(0)
    frames = {"in_frames": 5, "out_frames": 10}
    if name == "toy":
        return ToyDiffusionTask(sampling_steps=steps, **frames, **SCORING).eval()
    if name == "simvp":
        return SimVPTask(hid_S=8, hid_T=16, N_S=2, N_T=2, **frames, **SCORING).eval()
    return RainDiffTask(dim=8, dim_mults=(1, 2, 2), hid_S=8, hid_T=16, N_T=2, sampling_steps=steps, **frames,
                        **SCORING).eval()


def seams(name: str, size: int, tile: int, members: int, steps: int, tile_batch: int) -> list[dict]:
    model = tiny_model(name, steps)
    members = model.effective_members(members)
    frames = (composite(size, size, 5) + 10) / 70
    rows = []
    for overlap in (tile // 4, 0):
        layout = plan_tiles((size, size), (tile, tile), overlap=overlap, multiple=model.noise_stride)
        start = time.perf_counter()
        with torch.no_grad():
            result = forecast_tiles(model, frames, layout, members=members, seed=0, leads=10, tile_batch=tile_batch)
        stats = seam_statistics(result * 70 - 10, layout)
        rows.append({"measurement": "seams", "model": f"tiny {name} (seeded, untrained)", "grid": [size, size],
                     "tile": tile, "overlap": overlap, "tiles": len(layout), "members": members,
                     "sampling_steps": steps, "border_dbz": stats["border"], "inside_dbz": stats["inside"],
                     "ratio": stats["ratio"], "wall_s": time.perf_counter() - start})
    return rows


def memory(shape: tuple[int, int], tile: int, tile_batch: int) -> dict:
    model = PersistenceTask(in_frames=5, out_frames=12, **SCORING)
    precip = np.full((5, *shape), 20.0, np.float32)
    tracemalloc.start()
    start = time.perf_counter()
    output = forecast(model, precip, members=1, tile_size=tile, tile_batch=tile_batch)
    wall = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tile_batch_mb = tile_batch * (5 + 12) * tile * tile * 4 / 2**20
    return {"measurement": "memory", "model": "persistence", "grid": list(shape), "tile": tile,
            "tiles": len(plan_tiles(shape, (tile, tile), overlap=tile // 4)), "tile_batch": tile_batch,
            "input_mb": precip.nbytes / 2**20, "result_mb": output.nbytes / 2**20, "tile_batch_mb": tile_batch_mb,
            "peak_traced_mb": peak / 2**20, "peak_rss_mb": peak_rss_gb() * 1024,
            "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=("toy", "simvp", "raindiff"), default=("toy", "simvp"))
    parser.add_argument("--size", type=int, default=700)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--sampling-steps", type=int, default=2)
    parser.add_argument("--tile-batch", type=int, default=32)
    parser.add_argument("--opera", type=int, nargs=2, default=(3800, 4400))
    parser.add_argument("--opera-tile", type=int, default=256)
    output_argument(parser)
    parser.set_defaults(output=RESULTS)
    args = parser.parse_args()
    rows = [row for name in args.models
            for row in seams(name, args.size, args.tile, args.members, args.sampling_steps, args.tile_batch)]
    rows.append(memory(tuple(args.opera), args.opera_tile, 8))
    write_result({"benchmark": "forecast_seams", "rows": rows}, args.output, module="benchmarks.forecast_seams",
                 argv=None)


if __name__ == "__main__":
    main()
