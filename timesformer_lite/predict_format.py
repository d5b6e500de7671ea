"""How `timesformer-lite predict` prints a prediction: a small table per video, or one JSON object per line."""

from __future__ import annotations

import json

from .predict import Prediction


def as_table(pred: Prediction, average: str) -> str:
    """The video, its views and how they were averaged, then one ranked line per label, then the explanation files.

    Args:
        pred: the video's prediction.
        average: how its views were combined ("logits" or "softmax").
    """
    clips, crops = pred.views

    def count(n: int, word: str) -> str:
        return f"{n} {word}" + ("s" if n > 1 else "")

    views = f"{count(clips, 'clip')} x {count(crops, 'crop')} = {count(clips * crops, 'view')}"
    lines = [f"{pred.path}  ({views}, {average} averaged)"]
    width = max(len(label) for label, _ in pred.top_k)
    lines += [f"  {rank}. {label:<{width}}  {p:6.1%}" for rank, (label, p) in enumerate(pred.top_k, 1)]
    lines += [f"  explained: {path}" for path in pred.explained]
    return "\n".join(lines)


def as_json(pred: Prediction, average: str) -> str:
    """One line of JSON: path, top_k (label, probability), views (clips, crops), average, explained (files)."""
    return json.dumps(
        {
            "path": str(pred.path),
            "top_k": [{"label": label, "probability": p} for label, p in pred.top_k],
            "views": list(pred.views),
            "average": average,
            "explained": [str(p) for p in pred.explained],
        }
    )
