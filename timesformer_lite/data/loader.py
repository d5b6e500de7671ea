"""`build_loader`: a DataLoader over a `VideoDataset` that survives bad files and is reproducible.

Batches are dicts `{"video": (B, ...), "label": (B,), "index": (B,), "skipped": int}`; `skipped` counts the
items of this batch whose video could not be read (the dataset returned None), so the trainer can sum them
over an epoch whatever the number of workers. A batch where every item failed has B = 0.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


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


def _seed_worker(worker_id: int) -> None:
    """Give each worker's copy of the dataset its own generator, derived from the loader's seed.

    `torch.initial_seed()` in a worker is the loader's per-iterator base seed + worker_id, so runs with the
    same `seed` and worker count sample and augment identically.
    """
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(torch.initial_seed() % 2**63)


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
    """A DataLoader for training or evaluation.

    Args:
        dataset: usually a `VideoDataset` (anything returning dicts or None works).
        batch_size: clips per batch (per process when distributed).
        shuffle: reshuffle every epoch (by the sampler when distributed).
        num_workers: decoding processes; 0 decodes in the calling process (notebooks).
        seed: seeds shuffling, and sampling/augmentation in every worker.
        distributed: shard with a `DistributedSampler` (call `loader.sampler.set_epoch(epoch)` each epoch).
        drop_last: drop the last incomplete batch.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    sampler = None
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False
    if num_workers == 0 and hasattr(dataset, "reseed"):
        dataset.reseed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_videos,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        worker_init_fn=_seed_worker,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
