"""Resumable, reproducible sampling: the order and the augmentation of every clip are functions of
(seed, epoch, position), never of the worker count, the process count or what happened before.

That is what makes resume exact: a run restarted at step k of epoch e rebuilds the same permutation,
skips the first k batches, and every later clip gets the augmentation it would have had.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one clip, mixed so neighbouring positions and epochs are unrelated."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + position * 0x94D049BB133111EB) % 2**64
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) % 2**64
    return (x ^ (x >> 32)) % 2**63


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields `(index, seed)` pairs: a (shuffled) permutation per epoch, sharded over ranks.

    Args:
        size: dataset length.
        shuffle: a new permutation every epoch (torch.randperm seeded by seed + epoch).
        seed: the run seed.
        rank, world_size: this process's shard (DDP); positions rank, rank + world, ... of the global order.
        drop_last: drop the tail that does not fill every rank equally; otherwise pad by wrapping around.
    """

    def __init__(
        self, size: int, *, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1, drop_last: bool = False
    ) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.per_rank = size // world_size if drop_last else math.ceil(size / world_size)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation; skip the first `start` items of this rank (resuming mid-epoch)."""
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """The global order of this epoch (all ranks), padded to world_size * per_rank."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank * self.world_size
        while len(order) < total:
            order += order[: total - len(order)]
        return order[:total]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.order()
        for k in range(self.start, self.per_rank):
            position = k * self.world_size + self.rank
            yield order[position], sample_seed(self.seed, self.epoch, position)

    def __len__(self) -> int:
        return self.per_rank - self.start


class SeededDataset(Dataset):
    """Wraps a dataset with a `reseed(seed)` method so that item `(index, seed)` is drawn with that seed."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if hasattr(self.dataset, "reseed"):  # a Subset or plain dataset has no augmentation to seed
            self.dataset.reseed(seed)
        return self.dataset[index]
