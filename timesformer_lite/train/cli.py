"""`timesformer-lite train` / `python -m timesformer_lite train`: the trainer from the command line.

    timesformer-lite train --config toy                                   # one process
    torchrun --nproc_per_node=8 -m timesformer_lite train --config k400 model.pretrained=vit_b16.npz
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        -m timesformer_lite train --config k400                           # many machines
"""

from __future__ import annotations

import argparse

from .trainer import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="timesformer-lite train",
        description="Train a TimeSformer; under torchrun every process joins DDP.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default="toy", help="preset name (smoke, toy, ucf101, k400, finetune) or YAML path")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=2 model.depth=4")
    args = parser.parse_args(argv)
    result = run(args.config, args.overrides)
    if result.summary:
        print(f"best val top-1 {result.best_val_top1:.2%} (epoch {result.best_epoch}); run folder {result.run_dir}")
    return 0
