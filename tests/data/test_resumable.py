"""Resumable loader: interrupted on every rank and resumed from rank 0's state, each rank sees its windows once."""

import pytest
import torch

from nowcast_pl.data.resumable import ResumableDataLoader, ResumableSampler


class _Windows(torch.utils.data.Dataset):
    def __len__(self):
        return 23

    def __getitem__(self, index):
        return index


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_position_covers_every_window_once_across_ranks(workers):
    """Interrupt every rank after 2 batches, resume fresh loaders from rank 0's state: together with the
    batches seen before, each rank sees exactly its windows of the epoch, in the uninterrupted order."""
    world, batch = 2, 3

    def loader(rank):
        sampler = ResumableSampler(_Windows(), num_replicas=world, rank=rank, seed=7)
        sampler.set_epoch(1)
        return ResumableDataLoader(_Windows(), sampler=sampler, batch_size=batch, drop_last=True, num_workers=workers)

    full = {rank: [int(i) for b in loader(rank) for i in b] for rank in range(world)}
    assert sorted(full[0] + full[1]) == sorted(set(full[0] + full[1])) and len(full[0]) == 9
    before, states = {}, {}
    for rank in range(world):
        first = loader(rank)
        iterator = iter(first)
        before[rank] = [int(i) for _ in range(2) for i in next(iterator)]
        states[rank] = first.state_dict()
    assert states[0] == states[1] == {"epoch": 1, "batches": 2, "world_size": 2}
    for rank in range(world):
        resumed = loader(rank)
        resumed.sampler.set_epoch(0)  # a fresh loader, as after a restart
        resumed.load_state_dict(states[0])
        resumed.sampler.set_epoch(1)  # what Lightning calls after loading; it must keep the position
        after = [int(i) for b in resumed for i in b]
        assert before[rank] + after == full[rank]
        assert resumed.state_dict() == {"epoch": 2, "batches": 0, "world_size": 2}
