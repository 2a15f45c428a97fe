"""A training DataLoader that can stop and restart in the middle of an epoch without repeating or skipping data.

Lightning saves ``state_dict()`` of every training loader that has one in each checkpoint and calls
``load_state_dict()`` before creating the iterator when a fit resumes. The state is the epoch and the number of
batches this rank's loader has handed to the training loop in it; the resumed sampler draws the same per-rank
permutation (it depends only on ``(seed, epoch)``) and skips the samples of those batches. Workers only change
who reads the windows, not their order, so the position is exact for any ``num_workers``; every rank receives
the same number of batches, so one rank's state stands for all of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """:class:`~torch.utils.data.DistributedSampler` (shuffled, ``drop_last``) that can start an epoch part-way.

    Args:
        dataset: the training windows.
        num_replicas: number of ranks (1 for single-process training).
        rank: this rank.
        seed: shuffle seed; the order of epoch ``e`` depends only on ``(seed, e)``.
        keyed_by_epoch: yield ``(epoch, index)`` keys instead of indices, for a dataset whose items depend on
            the epoch (random crops), so an item is the same whether its epoch ran through or was resumed.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int,
                 keyed_by_epoch: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self._skip = 0
        self.keyed_by_epoch = keyed_by_epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning, unless it is the epoch a resume position was loaded for."""
        if epoch != self.epoch:
            self._skip = 0
        super().set_epoch(epoch)

    def resume(self, epoch: int, consumed: int) -> None:
        """The next iteration is epoch ``epoch`` without its first ``consumed`` samples of this rank."""
        self.epoch, self._skip = epoch, consumed

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        if self.keyed_by_epoch:
            return iter([(self.epoch, i) for i in indices[skip:]])
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` whose position in the epoch is checkpointed.

    Worker seeds come from the loader's own generator, re-seeded from ``(seed, epoch)`` at every epoch, so
    starting an iterator never draws from (and shifts) the global torch random stream of the training steps.

    Args:
        dataset: the training windows.
        sampler: the resumable sampler of this rank.
        batch_size: samples per batch on this rank.
        **kwargs: other :class:`~torch.utils.data.DataLoader` arguments (not ``sampler``, ``generator``).
    """

    def __init__(self, dataset: Dataset, *, sampler: ResumableSampler, batch_size: int, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, generator=torch.Generator(), **kwargs)
        self._epoch = sampler.epoch
        self._yielded = 0

    def __iter__(self) -> Iterator[Any]:
        sampler = self.sampler
        self.generator.manual_seed(sampler.seed * 1_000_003 + sampler.epoch)
        self._epoch = sampler.epoch
        self._yielded = sampler._skip // self.batch_size
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches", "world_size"}``: batches of ``epoch`` handed out so far on this rank."""
        epoch, batches = self._epoch, self._yielded
        if batches >= len(self):  # a finished epoch: the next one starts from its beginning
            epoch, batches = epoch + 1, 0
        return {"epoch": epoch, "batches": batches, "world_size": self.sampler.num_replicas}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict` position (the next iterator starts there)."""
        if state["world_size"] != self.sampler.num_replicas:
            warnings.warn(
                f"the checkpoint was written by {state['world_size']} ranks and this run has "
                f"{self.sampler.num_replicas}: the interrupted epoch restarts from its beginning", stacklevel=2)
            self.sampler.resume(state["epoch"], 0)
            return
        self.sampler.resume(state["epoch"], state["batches"] * self.batch_size)
        self._epoch, self._yielded = state["epoch"], state["batches"]
