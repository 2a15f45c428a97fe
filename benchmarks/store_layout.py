"""Measure radar-store layouts: write MB/s, size on disk, and random 25-frame window reads per second.

Prints one JSON line per layout, then all of them in one JSON object. Usage:
``python -m benchmarks.store_layout [--events 40 --size 384 --output FILE]``.
Data: synthetic radar frames (realistic compressibility), uint8, like SEVIR VIL at 384×384.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import output_argument, write_result
from nowcast_pl.data.store import RadarStore, RadarStoreWriter, StoreLayout
from nowcast_pl.data.synthetic import SYNTHETIC_ENCODING as ENCODING
from nowcast_pl.data.synthetic import SyntheticRadarConfig, generate_event, synthetic_metadata

WINDOW = 25


def _events(n_events: int, size: int, frames: int) -> list[np.ndarray]:
    config = SyntheticRadarConfig(height=size, width=size, n_frames=frames)
    rng = np.random.default_rng(0)
    return [ENCODING.encode(generate_event(config, rng)) for _ in range(n_events)]


def _measure(path: Path, events: list[np.ndarray], layout: StoreLayout, reads: int) -> dict:
    start = time.perf_counter()
    metadata = synthetic_metadata(SyntheticRadarConfig(), seed=0)
    with RadarStoreWriter(path, frame_shape=events[0].shape[1:], encoding=ENCODING, metadata=metadata,
                          layout=layout, overwrite=True) as writer:
        for k, frames in enumerate(events):
            day = np.datetime64("2020-01-01") + np.timedelta64(k, "D")
            times = day + np.arange(len(frames)) * np.timedelta64(5, "m")
            writer.append_event(f"e{k}", times, frames)
    write_s = time.perf_counter() - start
    raw_mb = sum(f.nbytes for f in events) / 1e6
    disk_mb = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    store = RadarStore(path)
    rng = np.random.default_rng(1)
    starts = rng.integers(0, len(store) - WINDOW, reads)
    start = time.perf_counter()
    for s in starts:
        store.read_raw(int(s), int(s) + WINDOW)
    read_s = time.perf_counter() - start
    n_files = sum(1 for p in path.rglob("*") if p.is_file())
    return {"shard_frames": layout.shard_frames, "zstd_level": layout.zstd_level, "write_mb_per_s": raw_mb / write_s,
            "raw_mb": raw_mb, "disk_mb": disk_mb, "files": n_files, "windows_per_s": reads / read_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=24)
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--reads", type=int, default=100)
    output_argument(parser)
    args = parser.parse_args()
    events = _events(args.events, args.size, args.frames)
    settings = ((1, 3), (16, 3), (49, 3), (64, 3), (256, 3), (64, 1), (64, 9))
    layouts = [StoreLayout(shard_frames=s, zstd_level=z) for s, z in settings]
    root = Path(tempfile.mkdtemp())
    rows = []
    try:
        for layout in layouts:
            rows.append(_measure(root / "s.zarr", events, layout, args.reads))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(root)
    write_result({"rows": rows}, args.output, module="benchmarks.store_layout", argv=None)


if __name__ == "__main__":
    main()
