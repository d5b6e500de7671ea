"""Small helpers: the device and its accumulator dtype, view averaging, parameter counts, FLOPs (torch's own
counter), seeding."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig
from .model import TimeSformer


def pick_device(name: str, local_rank: int = 0, setting: str = "train.device={}") -> torch.device:
    """The device `name` names; `auto` is the process's GPU if there is one, else the CPU.

    Args:
        name: auto, cpu, cuda, cuda:N or mps.
        local_rank: the GPU of this process on its machine (torchrun's LOCAL_RANK), for auto and a bare cuda.
        setting: how the user wrote the choice, with `{}` for the value ("train.device={}", "--device {}",
            "device={!r}"), so that an error names the setting the user can change.

    Raises:
        ValueError: the device is not on this machine.
    """
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    missing = {"cuda": not torch.cuda.is_available(), "mps": not torch.backends.mps.is_available()}
    if missing.get(device.type):
        gpu = "no CUDA GPU is visible" if device.type == "cuda" else "Apple's MPS is not available"
        raise ValueError(f"{setting.format(name)}: {gpu} here; use {setting.format('cpu')} or {setting.format('auto')}")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """The dtype for sums kept on `device` across many steps: float64, or float32 on Apple's MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def average_views(scores: Tensor, method: str) -> Tensor:
    """(B, V, classes) per-view outputs -> (B, classes) per-video scores.

    "logits" averages raw logits (official sums them, PaddleVideo averages: same ranking); "softmax"
    averages probabilities (mmaction2), which lets no single confident view dominate.
    """
    if method == "logits":
        return scores.mean(dim=1)
    if method == "softmax":
        return scores.softmax(dim=-1).mean(dim=1)
    raise ValueError(f"view averaging {method!r} is not one of logits, softmax")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_flops(cfg: ModelConfig, num_frames: int | None = None, img_size: int | None = None, batch: int = 1) -> int:
    """Forward FLOPs of one pass (2 FLOPs per multiply-add), counted by `torch.utils.flop_counter`.

    The model is built on the meta device, so this is instant even for large configs. The explicit
    attention path is counted (the counter does not see inside every fused SDPA kernel); it does the
    same matrix products. TimeSformer-B divided 8x224 gives ~391.7 GFLOP (= 195.8 G multiply-adds).
    """
    T = num_frames or cfg.num_frames
    S = img_size or cfg.img_size
    with torch.device("meta"):
        model = TimeSformer(cfg).eval()
        video = torch.empty(batch, T, cfg.in_chans, S, S)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(video, return_attention=True)
    return int(counter.get_total_flops())


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run is repeatable."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
