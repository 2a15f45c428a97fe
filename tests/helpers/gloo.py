"""Two gloo ranks for metric-sync tests: rank 0 in this process, rank 1 in one spawned process."""

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.multiprocessing as mp


def results_of_two_gloo_ranks(worker: Callable[[int, int, str, str], None]) -> list:
    """Run ``worker(rank, world_size, rendezvous_file, out_dir)`` on ranks 0 and 1; each rank saves its result
    to ``out_dir/rank<r>.pt``. ``worker`` must be a module-level function (the spawned rank imports it).

    Returns:
        The two saved results, rank 0 first.
    """
    with tempfile.TemporaryDirectory() as out_dir:
        args = (2, str(Path(out_dir) / "rendezvous"), out_dir)
        other_rank = mp.get_context("spawn").Process(target=worker, args=(1, *args))
        other_rank.start()
        try:
            worker(0, *args)
        finally:
            other_rank.join(timeout=60)
        assert other_rank.exitcode == 0
        return [torch.load(Path(out_dir) / f"rank{rank}.pt") for rank in range(2)]
