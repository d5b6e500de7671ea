"""`timesformer-lite info`: a config's model described (parameters, FLOPs) and run once on a random clip."""

from __future__ import annotations

import argparse
import time

import torch

from .config import load_config
from .model import TimeSformer
from .utils import count_parameters, model_flops


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
