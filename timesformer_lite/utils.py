"""Small helpers: the device, view averaging, parameter counts, FLOPs (torch's own counter), seeding, and the
`info` command."""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from .config import ModelConfig, load_config
from .model import TimeSformer


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` is the process's GPU if there is one, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but no CUDA GPU is visible; use train.device=cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


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


def main(argv: list[str] | None = None) -> int:
    """`timesformer-lite info`: describe a config's model and run one forward pass."""
    parser = argparse.ArgumentParser(prog="timesformer-lite info", description=main.__doc__)
    parser.add_argument("--config", default="toy", help="preset name or YAML path (default: toy)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.depth=4")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    m = cfg.model
    torch.manual_seed(0)
    model = TimeSformer(m).eval()
    video = torch.randn(1, m.num_frames, m.in_chans, m.img_size, m.img_size)
    start = time.perf_counter()
    with torch.no_grad():
        logits, maps = model(video, return_attention=True)
    ms = (time.perf_counter() - start) * 1e3
    print(f"TimeSformer ({args.config}): {m.attention_type}, {m.num_frames}x{m.img_size}px, patch {m.patch_size}")
    print(f"  depth {m.depth}, width {m.embed_dim}, heads {m.num_heads}, classes {m.num_classes}")
    print(f"  parameters: {count_parameters(model):,}")
    print(f"  forward:    {model_flops(m) / 1e9:.3f} GFLOP per clip")
    print(f"  one clip {tuple(video.shape)} -> logits {tuple(logits.shape)} in {ms:.0f} ms on CPU")
    for name in ("space", "time", "joint", "width", "height", "local", "sparse"):
        layers = getattr(maps, name)
        if layers:
            print(f"  attention maps '{name}': {len(layers)} layers of {tuple(layers[0].shape)}")
    return 0
