"""Throughput and peak memory of ``nowcast-prep sevir`` on a generated SEVIR-like archive.

Writes (once, reused while its size and seed match) an archive laid out like SEVIR (datasets.md §1):
``CATALOG.csv`` and ``data/vil/2019/SEVIR_VIL_*.h5`` with ``id`` (N,) and uncompressed ``vil``
(N, 384, 384, 49) uint8 N H W T, one row of 7.2 MB per event, as the real files (137 GB for ~20k events).
Events are advected, growing cells on a dry background (~65-90 % zeros; zstd compresses frames 3-9x, a bit
less than real VIL). Then runs the conversion as a child process (``python -m data_prep sevir``), sampling
the proportional memory (PSS) of the process tree, and prints one JSON object.

``--writer-check`` also measures the store writer alone: appending 49-frame events (shards of 64 frames are
then rewritten once or twice) against appending the same frames in shard-aligned 64-frame blocks, i.e. what a
buffering writer would do.

Usage: ``python -m benchmarks.prep_throughput [--size-gb 2 --workers 2 --dir /tmp/sevir-bench --writer-check]``.
The archive is in the page cache when just written, so MB/s measures the conversion, not the disk.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import psutil

from benchmarks.harness import output_argument, write_result

SIZE, FRAMES = 384, 49
EVENT_BYTES = SIZE * SIZE * FRAMES
OFFSETS = ":".join(str(m) for m in range(-120, 121, 5))


def vil_event(rng: np.random.Generator) -> np.ndarray:
    """(384, 384, 49) uint8 VIL-encoded event (H, W, T): a smooth random field advected across the grid."""
    speed = rng.uniform(0.5, 3.0, 2) * rng.choice([-1, 1], 2)
    pad = int(np.ceil(np.abs(speed).max() * FRAMES)) + 2
    side = SIZE + 2 * pad
    ky, kx = np.fft.fftfreq(side)[:, None], np.fft.rfftfreq(side)[None, :]
    scale = rng.uniform(8.0, 25.0)  # cell size (px)
    spectrum = np.fft.rfft2(rng.standard_normal((side, side))) * np.exp(-(ky**2 + kx**2) * (2 * np.pi * scale) ** 2 / 2)
    field = np.fft.irfft2(spectrum, s=(side, side))
    field = (field - field.mean()) / field.std()
    threshold = rng.uniform(0.3, 1.2)
    out = np.empty((SIZE, SIZE, FRAMES), np.uint8)
    for t in range(FRAMES):
        y0, x0 = (pad + speed * t).astype(int)
        f = field[y0:y0 + SIZE, x0:x0 + SIZE]
        growth = 1.0 + 0.5 * np.sin(np.pi * t / FRAMES)
        wet = 18.0 + 60.0 * (f - threshold) * growth + rng.normal(0.0, 6.0, f.shape)
        out[:, :, t] = np.where(f > threshold, np.clip(wet, 0, 254), 0)
    return out


def write_archive(root: Path, n_events: int, events_per_file: int, seed: int) -> int:
    """Write the archive under ``root`` (reused if its stamp matches); returns its size in bytes."""
    stamp = root / "ARCHIVE.json"
    wanted = {"n_events": n_events, "events_per_file": events_per_file, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return sum(p.stat().st_size for p in root.rglob("*.h5"))
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    rows, start = [], pd.Timestamp("2019-01-01 00:00:00")
    for first in range(0, n_events, events_per_file):
        n = min(events_per_file, n_events - first)
        name = f"vil/2019/SEVIR_VIL_STORMEVENTS_2019_{first // events_per_file:04d}.h5"
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as h5:
            ids = [f"S{800000 + first + i}" for i in range(n)]
            h5.create_dataset("id", data=np.array(ids, dtype="S16"))
            vil = h5.create_dataset("vil", shape=(n, SIZE, SIZE, FRAMES), dtype=np.uint8)
            for i in range(n):
                vil[i] = vil_event(rng)
                rows.append({"id": ids[i], "file_name": name, "file_index": i, "img_type": "vil",
                             "time_utc": str(start + pd.Timedelta(hours=6 * (first + i))),
                             "minute_offsets": OFFSETS, "proj": "+proj=laea +lat_0=38 +lon_0=-98 +units=m",
                             "size_x": SIZE, "size_y": SIZE, "pct_missing": 0.0})
        print(f"wrote {path} ({n} events)", file=sys.stderr, flush=True)
    pd.DataFrame(rows).to_csv(root / "CATALOG.csv", index=False)
    stamp.write_text(json.dumps(wanted))
    return sum(p.stat().st_size for p in root.rglob("*.h5"))


def _tree_pss(proc: psutil.Process) -> int:
    """Proportional set size (bytes) of a process and its descendants (shared pages counted once)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run_conversion(src: Path, dst: Path, workers: int) -> dict:
    """Convert in a child process; returns wall time and peak memory of the process tree."""
    cmd = [sys.executable, "-m", "data_prep", "sevir", "--src", str(src), "--dst", str(dst),
           "--workers", str(workers), "--overwrite", "--no-progress"]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    proc, peak_pss, peak_rss = psutil.Process(child.pid), 0, 0
    while child.poll() is None:
        try:
            peak_pss = max(peak_pss, _tree_pss(proc))
            peak_rss = max(peak_rss, max(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    stderr = child.stderr.read() if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"conversion failed ({child.returncode}):\n{stderr}")
    return {"wall_s": time.perf_counter() - start, "peak_tree_pss_mb": peak_pss / 1e6,
            "peak_process_rss_mb": peak_rss / 1e6}


def writer_check(tmp: Path, n_events: int, seed: int) -> dict:
    """Store-writer MB/s for 49-frame appends vs shard-aligned 64-frame appends of the same frames."""
    from data_prep.sevir import ENCODING
    from nowcast_pl.data.schema import StoreMetadata
    from nowcast_pl.data.store import RadarStoreWriter, StoreLayout

    rng = np.random.default_rng(seed)
    frames = np.concatenate([np.moveaxis(vil_event(rng), -1, 0) for _ in range(n_events)])
    meta = StoreMetadata(title="bench", source="bench", licence="none", citation="none", time_step_seconds=300)
    times = np.datetime64("2019-01-01", "s") + np.arange(len(frames)) * np.timedelta64(300, "s")
    out = {"frames": int(len(frames)), "mb": frames.nbytes / 1e6}
    for label, block, shard in (("event_49_shard_64", FRAMES, 64), ("aligned_64_shard_64", 64, 64),
                                ("event_49_shard_49", FRAMES, FRAMES)):
        path = tmp / f"{label}.zarr"
        start = time.perf_counter()
        writer = RadarStoreWriter(path, frame_shape=(SIZE, SIZE), encoding=ENCODING, metadata=meta,
                                  layout=StoreLayout(shard_frames=shard), overwrite=True)
        for k, first in enumerate(range(0, len(frames), block)):
            writer.append_event(f"e{k}", times[first:first + block], frames[first:first + block])
        seconds = time.perf_counter() - start
        out[label] = {"seconds": round(seconds, 3), "mb_per_s": round(frames.nbytes / 1e6 / seconds, 1)}
        shutil.rmtree(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=2.0, help="archive size (GB of vil), default 2")
    parser.add_argument("--events-per-file", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, help="work folder (default: a new temporary folder, removed after)")
    parser.add_argument("--writer-check", action="store_true", help="also compare store-writer append patterns")
    output_argument(parser)
    args = parser.parse_args()
    from data_prep.registry import converters

    if "sevir" not in converters():
        raise SystemExit("prep_throughput: the SEVIR converter (data_prep/sevir.py, SevirConverter) is not "
                         "available yet; this benchmark converts a SEVIR-like archive with it")
    work = args.dir or Path(tempfile.mkdtemp(prefix="prep-bench-"))
    n_events = max(1, math.ceil(args.size_gb * 1e9 / EVENT_BYTES))
    start = time.perf_counter()
    source_bytes = write_archive(work / "sevir", n_events, args.events_per_file, args.seed)
    generate_s = time.perf_counter() - start
    dst = work / "sevir.zarr"
    measured = run_conversion(work / "sevir", dst, args.workers)
    summary = json.loads(dst.with_name(dst.name + ".report.json").read_text())["summary"]
    result = {
        "events": summary["store_events"], "frames": summary["store_frames"], "workers": args.workers,
        "source_mb": round(source_bytes / 1e6, 1), "store_mb": round(summary["store_bytes"] / 1e6, 1),
        "compression_ratio": round(source_bytes / summary["store_bytes"], 2),
        "convert_s": summary["seconds"], "convert_mb_per_s": round(source_bytes / 1e6 / summary["seconds"], 1),
        "wall_s_with_startup": round(measured["wall_s"], 1),
        "peak_tree_pss_mb": round(measured["peak_tree_pss_mb"], 1),
        "peak_process_rss_mb": round(measured["peak_process_rss_mb"], 1),
        "generate_s": round(generate_s, 1), "cpu_count": psutil.cpu_count(),
    }
    if args.writer_check:
        result["writer_check"] = writer_check(work, n_events=min(n_events, 13), seed=args.seed + 1)
    write_result(result, args.output, module="benchmarks.prep_throughput", argv=None)
    if args.dir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
