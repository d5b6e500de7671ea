"""The report of a test: metrics.json, predictions.csv and confusion.png, and the line printed about it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .evaluate import EvalResult


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


def summary_line(result: EvalResult) -> str:
    """One printed line: top-1, top-5, within-pair where it applies, skipped videos."""
    line = f"test: top-1 {result.top1:.2%}  top-5 {result.top5:.2%}  on {result.num_videos} videos"
    if result.within_pair is not None:
        line += f"  within-pair {result.within_pair:.2%}"
    if result.skipped:
        line += f"  ({result.skipped} unreadable skipped)"
    return line
