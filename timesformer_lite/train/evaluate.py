"""Evaluation: the fast single-view validation and the reference multi-view test protocol.

Test protocol: every video gives V = num_clips x num_crops views (PaddleVideo/official K400: 1 clip from
`linspace`/dense sampling x 3 UniformCrops along the long side); the model scores every view and the scores
are averaged per video, as raw logits (`train.test_average=logits`, the official code and PaddleVideo) or as
softmax probabilities (`softmax`, mmaction2). Both rank classes almost always the same way; softmax keeps one
over-confident view from dominating.

`timesformer-lite test --checkpoint runs/toy/best.pt` writes metrics.json, predictions.csv and
confusion.png next to the checkpoint (or into --out).
"""

from __future__ import annotations

import argparse
import csv
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import Config
from ..utils import average_views, pick_device
from .distributed import DistEnv, all_gather_cat, all_reduce_sum
from .metrics import (
    confusion_matrix,
    pair_partners,
    per_class_accuracy,
    topk_correct,
    within_pair_accuracy,
)


@dataclass
class EvalResult:
    """Metrics over the videos of one split (deduplicated across ranks)."""

    top1: float
    top5: float
    loss: float
    num_videos: int
    skipped: int = 0
    within_pair: float | None = None  # toy motions: true class beats its temporal-order partner
    per_class: list[float] = field(default_factory=list)
    confusion: Tensor | None = None
    scores: Tensor | None = None  # (videos, classes), logits or probabilities per `average`
    labels: Tensor | None = None
    indices: Tensor | None = None

    def metrics(self) -> dict[str, float | int | None]:
        """The scalar metrics, for logs and summary.json."""
        return {
            "top1": self.top1,
            "top5": self.top5,
            "loss": self.loss,
            "within_pair": self.within_pair,
            "videos": self.num_videos,
            "skipped": self.skipped,
        }


def autocast_for(device: torch.device, amp: str):
    """bf16/fp16 autocast on the model's device, or nothing."""
    if amp == "none":
        return nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if dtype is None:
        raise ValueError(f"train.amp={amp!r} is not one of none, bf16, fp16")
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    *,
    device: torch.device,
    num_classes: int,
    env: DistEnv | None = None,
    amp: str = "none",
    average: str = "logits",
    pairs: bool = False,
) -> EvalResult:
    """Score every video of `loader` (single view (B, T, C, H, W) or multi-view (B, V, T, C, H, W) batches).

    Args:
        model: the (possibly DDP-wrapped) model; put in eval mode here.
        loader: batches as `timesformer_lite.data.build_loader` yields them.
        device, amp: where and in which precision to run.
        num_classes: for the confusion matrix.
        env: the distributed environment; results are gathered from every rank.
        average: how views combine, "logits" or "softmax" (see the module docstring).
        pairs: also report within-pair accuracy for classes in consecutive temporal-order pairs.
    """
    env = env or DistEnv(device=device)
    was_training = model.training
    model.eval()
    scores, labels, indices, skipped = [], [], [], 0
    for batch in loader:
        skipped += batch["skipped"]
        if batch["label"].numel() == 0:
            continue
        video = batch["video"].to(device, non_blocking=True)
        B = video.shape[0]
        views = video.flatten(0, 1) if video.dim() == 6 else video  # (B*V, T, C, H, W)
        with autocast_for(device, amp):
            logits = model(views)
        scores.append(average_views(logits.float().reshape(B, -1, logits.shape[-1]), average).cpu())
        labels.append(batch["label"])
        indices.append(batch["index"])
    model.train(was_training)
    empty = torch.empty(0, dtype=torch.long)
    scores_t = torch.cat(scores) if scores else torch.empty(0, num_classes)
    labels_t = torch.cat(labels) if labels else empty
    indices_t = torch.cat(indices) if indices else empty
    if env.distributed:  # gather on every rank; padding repeats some videos, keep each index once
        on = env.device
        scores_t = all_gather_cat(scores_t.to(on), env).cpu()
        labels_t = all_gather_cat(labels_t.to(on), env).cpu()
        indices_t = all_gather_cat(indices_t.to(on), env).cpu()
        skipped = int(all_reduce_sum(torch.tensor([skipped], device=on), env).item())
        keep = _first_occurrences(indices_t)
        scores_t, labels_t, indices_t = scores_t[keep], labels_t[keep], indices_t[keep]
    n = len(labels_t)
    if n == 0:
        raise ValueError("no readable videos to evaluate: every item was skipped (see the warnings above)")
    hits = topk_correct(scores_t, labels_t, (1, 5))
    log_probs = scores_t.clamp_min(1e-12).log() if average == "softmax" else scores_t.log_softmax(-1)
    confusion = confusion_matrix(scores_t.argmax(1), labels_t, num_classes)
    return EvalResult(
        top1=hits[1] / n,
        top5=hits[5] / n,
        loss=float(F.nll_loss(log_probs, labels_t)),
        num_videos=n,
        skipped=skipped,
        within_pair=within_pair_accuracy(scores_t, labels_t, pair_partners(num_classes)) if pairs else None,
        per_class=per_class_accuracy(confusion).tolist(),
        confusion=confusion,
        scores=scores_t,
        labels=labels_t,
        indices=indices_t,
    )


def _first_occurrences(indices: Tensor) -> Tensor:
    seen, keep = set(), []
    for k, i in enumerate(indices.tolist()):
        if i not in seen:
            seen.add(i)
            keep.append(k)
    return torch.tensor(keep, dtype=torch.long)


def write_report(result: EvalResult, classes: list[str], paths: list[str], out_dir: Path) -> dict[str, Path]:
    """metrics.json, predictions.csv (one row per video: path, label, prediction, top-5) and confusion.png."""
    from ..viz.plots import confusion_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"metrics": out_dir / "metrics.json", "predictions": out_dir / "predictions.csv"}
    per_class = {c: acc for c, acc in zip(classes, result.per_class)}
    written["metrics"].write_text(json.dumps({**result.metrics(), "per_class": per_class}, indent=2))
    top5 = result.scores.topk(min(5, result.scores.shape[1]), dim=1).indices
    with written["predictions"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "prediction", "correct", "score", "top5"])
        for row, (idx, label) in enumerate(zip(result.indices.tolist(), result.labels.tolist())):
            pred = int(top5[row, 0])
            w.writerow(
                [
                    paths[idx],
                    classes[label],
                    classes[pred],
                    int(pred == label),
                    f"{float(result.scores[row, pred]):.4f}",
                    " ".join(classes[k] for k in top5[row].tolist()),
                ]
            )
    fig = confusion_figure(result.confusion, classes)
    written["confusion"] = out_dir / "confusion.png"
    fig.savefig(written["confusion"], dpi=100, bbox_inches="tight")
    return written


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


def summary_line(result: EvalResult) -> str:
    """One printed line: top-1, top-5, within-pair where it applies, skipped videos."""
    line = f"test: top-1 {result.top1:.2%}  top-5 {result.top5:.2%}  on {result.num_videos} videos"
    if result.within_pair is not None:
        line += f"  within-pair {result.within_pair:.2%}"
    if result.skipped:
        line += f"  ({result.skipped} unreadable skipped)"
    return line


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
