"""Windows per second delivered by ``RadarDataModule`` for 0, 1 and 2 DataLoader workers.

Prints one JSON line per worker count, then all of them in one JSON object. Usage:
``python -m benchmarks.read_windows --store data/synthetic.zarr [--frame-size 128 --batches 30 --output FILE]``.
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks.harness import output_argument, write_result
from nowcast_pl.data import RadarDataModule, Split


def measure(store: str, workers: int, frame_size: int | None, batches: int, batch_size: int) -> dict:
    dm = RadarDataModule(store, in_frames=5, out_frames=20, value_range=(-10.0, 60.0), splits={"train": Split()},
                         frame_size=frame_size, batch_size=batch_size, num_workers=workers, persistent_workers=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    iterator = iter(loader)
    next(iterator)  # worker start-up is not part of the steady-state rate
    start = time.perf_counter()
    n = 0
    for _, batch in zip(range(batches), iterator, strict=False):
        n += batch["inputs"].shape[0]
    seconds = time.perf_counter() - start
    return {"workers": workers, "frame_size": frame_size, "windows_per_s": n / seconds,
            "windows_per_s_per_worker": n / seconds / max(1, workers), "windows": n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--frame-size", type=int, default=None)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    output_argument(parser)
    args = parser.parse_args()
    rows = []
    for workers in (0, 1, 2):
        rows.append(measure(args.store, workers, args.frame_size, args.batches, args.batch_size))
        print(json.dumps(rows[-1]), flush=True)
    write_result({"rows": rows}, args.output, module="benchmarks.read_windows", argv=None)


if __name__ == "__main__":
    main()
