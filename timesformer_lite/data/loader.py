"""`build_loader`: a DataLoader over a `VideoDataset` that survives bad files and is reproducible.

Batches are dicts `{"video": (B, ...), "label": (B,), "index": (B,), "skipped": int}`; `skipped` counts the
items of this batch whose video could not be read (the dataset returned None), so the trainer can sum them
over an epoch whatever the number of workers. A batch where every item failed has B = 0.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .sampler import ResumableSampler, SeededDataset


def collate_videos(items: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack the readable items; count the None ones in `skipped`."""
    good = [it for it in items if it is not None]
    if not good:
        empty = torch.empty(0, dtype=torch.long)
        return {"video": torch.empty(0), "label": empty, "index": empty.clone(), "skipped": len(items)}
    return {
        "video": torch.stack([it["video"] for it in good]),
        "label": torch.tensor([it["label"] for it in good], dtype=torch.long),
        "index": torch.tensor([it["index"] for it in good], dtype=torch.long),
        "skipped": len(items) - len(good),
    }


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.2)
        if os.getppid() != parent:  # re-parented: the process that made this worker is gone
            os._exit(1)


def pool_worker_init(parent: int) -> None:
    """Initializer of the decoding / encoding pools (`data.cache` preload, toy generation).

    A pool worker waits on a queue whose pipe it holds both ends of, so it would outlive a parent killed by
    kill -9 or the OOM killer forever; a watcher thread ends it when it is re-parented. Ctrl-C is left to the
    parent, which shuts the pool down (one message instead of a traceback per worker).

    Args:
        parent: the pid of the process that makes the pool (`os.getpid()` there).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != parent:  # the parent died before this worker started
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def workers_for(num_workers: int | str, device: torch.device | str) -> int:
    """`data.num_workers` as a number of DataLoader processes for a training process on `device`.

    "auto" is 0 on a CPU, whose cores the model's own threads already use (on 2 cores the toy preset
    trained faster loading in the main process), and on a GPU one process per CPU core this process has
    to itself (cores / processes on the node, less one for the process itself), at most 8. A GPU step
    of a small model takes milliseconds, less than the main process needs to prepare a batch, so
    without workers the GPU would wait for data most of the time.
    """
    if num_workers != "auto":
        return int(num_workers)
    if torch.device(device).type == "cpu":
        return 0
    per_process = usable_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, per_process - 1))


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int,
    seed: int,
    distributed: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader for training or evaluation whose clips do not depend on workers, ranks or history.

    The sampler is a `ResumableSampler`: each epoch's order comes from (seed, epoch), and every clip is
    sampled and augmented with its own seed from (seed, epoch, position) (the dataset's `reseed`), so the
    same run gives the same batches with 0 or 8 workers, on 1 or N processes, and after a resume mid-epoch
    (`loader.sampler.set_epoch(epoch, start=k)` skips the first k clips of this rank).

    Args:
        dataset: usually a `VideoDataset` (anything with `reseed(seed)` returning dicts or None works).
        batch_size: clips per batch (per process when distributed).
        shuffle: a new order every epoch (call `loader.sampler.set_epoch(epoch)`).
        num_workers: decoding processes; 0 decodes in the calling process (notebooks).
        seed: seeds the order and every clip's sampling/augmentation.
        distributed: shard over the ranks of the initialised process group (DDP).
        drop_last: drop the last incomplete batch (and the tail that would not fill every rank).
    """
    rank, world_size = 0, 1
    if distributed and torch.distributed.is_initialized():
        rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    sampler = ResumableSampler(
        len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last
    )
    return DataLoader(
        SeededDataset(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_videos,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )
