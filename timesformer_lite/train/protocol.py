"""The reference test protocol on a model or a checkpoint, and the `timesformer-lite test` command.

`timesformer-lite test --checkpoint runs/toy/best.pt` runs the protocol of the checkpoint's own config (views,
averaging: see `evaluate.py`) and writes metrics.json, predictions.csv and confusion.png next to the checkpoint
(or into --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from ..config import Config
from ..utils import pick_device
from .evaluate import EvalResult, evaluate
from .report import summary_line, write_report


def test_protocol(model: nn.Module, cfg: Config, device: torch.device, out_dir: Path) -> tuple[EvalResult, dict]:
    """The reference test protocol of `cfg` (views, averaging) on `model`; writes the report into `out_dir`.

    The views are scored by `tl.fuse(model)` (the same logits, faster); `model` itself is only moved to `device`.
    """
    from ..data import build_dataset, build_loader, workers_for
    from ..fuse import fuse

    dataset = build_dataset(cfg, "test")
    workers = workers_for(cfg.data.num_workers, device)
    loader = build_loader(dataset, max(1, cfg.train.batch_size // 2), shuffle=False, num_workers=workers, seed=0)
    result = evaluate(
        fuse(model.to(device)),
        loader,
        device=device,
        num_classes=cfg.model.num_classes,
        amp=cfg.train.amp,
        average=cfg.train.test_average,
        pairs=cfg.data.dataset == "toy",
    )
    written = write_report(result, dataset.classes, [str(p) for p, _ in dataset.items], out_dir)
    return result, written


def test_checkpoint(
    checkpoint: str | Path, overrides: list[str] | None = None, out_dir: str | Path | None = None
) -> tuple[EvalResult, dict[str, Path]]:
    """Run the test protocol of the checkpoint's own config (plus overrides) and write the report.

    `model.*` overrides go to `load_pretrained` (e.g. model.num_frames=16 resizes the time embedding; one that
    does not fit the weights is an error naming the keys); the others change the protocol (data.num_crops=3).
    """
    from ..config import load_config, parse_override
    from ..weights import load_pretrained

    parsed = [parse_override(o) for o in overrides or []]
    model_overrides = {k.removeprefix("model."): v for k, v in parsed if k.startswith("model.")}
    model = load_pretrained(checkpoint, **model_overrides)
    base = getattr(model, "run_config", None)
    if base is None:
        raise ValueError(f"'{checkpoint}' carries no data config; test a checkpoint written by timesformer-lite train")
    cfg: Config = load_config(base, {k: v for k, v in parsed if not k.startswith("model.")})
    return test_protocol(
        model, cfg, pick_device(cfg.train.device), Path(out_dir) if out_dir else Path(checkpoint).parent
    )


def main(argv: list[str] | None = None) -> int:
    """`timesformer-lite test`: the reference test protocol on a checkpoint."""
    parser = argparse.ArgumentParser(prog="timesformer-lite test", description=__doc__.split("\n\n")[1])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by timesformer-lite train")
    parser.add_argument("--out", default=None, help="folder for metrics.json, predictions.csv, confusion.png")
    parser.add_argument(
        "overrides", nargs="*", help="key=value, e.g. data.num_crops=3 data.num_clips=2 train.test_average=softmax"
    )
    args = parser.parse_args(argv)
    result, written = test_checkpoint(args.checkpoint, args.overrides, args.out)
    print(summary_line(result))
    for name, path in written.items():
        print(f"  {name}: {path}")
    return 0
