"""DDP set-up and teardown, detected from the environment `torchrun` provides (RANK, WORLD_SIZE, LOCAL_RANK).

One process per device; NCCL on GPUs, gloo on CPU. Without torchrun everything here is a no-op.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..utils import pick_device


@dataclass
class DistEnv:
    """Where this process sits: rank among world_size processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0 logs, writes checkpoints and shows progress."""
        return self.rank == 0


def setup(device_name: str = "auto") -> DistEnv:
    """Join the process group if launched by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world_size, local_rank, device)


def teardown(env: DistEnv) -> None:
    """Leave the process group cleanly (gloo crashes at exit about a third of the time without the barrier)."""
    if env.distributed and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over ranks (in place on a copy); identity in a single process."""
    if env.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_cat(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate a per-rank tensor (first dim may differ) from every rank, in rank order."""
    if not env.distributed:
        return values
    sizes = [torch.zeros(1, dtype=torch.long, device=values.device) for _ in range(env.world_size)]
    dist.all_gather(sizes, torch.tensor([values.shape[0]], device=values.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *values.shape[1:]), dtype=values.dtype, device=values.device)
    padded[: values.shape[0]] = values
    gathered = [torch.zeros_like(padded) for _ in range(env.world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes)])
