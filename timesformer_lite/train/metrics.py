"""Classification metrics: top-k, per-class accuracy, confusion matrix, and within-pair accuracy.

Within-pair accuracy is the toy-motions measure (see docs/toy_motions.md): classes come in pairs
that differ only in temporal order, and a prediction is right within its pair when the true class's score
beats its partner's. A model blind to frame order sits at 50 % on it, whatever its overall accuracy.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..utils import average_views  # noqa: F401 (its home is utils, beside predict's other needs)


def topk_correct(scores: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """Number of rows whose label is among the k highest scores, for each k (k capped at the class count)."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices  # (B, kmax)
    hits = top == labels[:, None]
    return {k: int(hits[:, : min(k, scores.shape[1])].any(dim=1).sum()) for k in ks}


def confusion_matrix(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(num_classes, num_classes) counts; row = true class, column = predicted class."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """Recall of each class (nan for a class with no examples)."""
    totals = confusion.sum(dim=1).double()
    return confusion.diagonal().double() / totals.where(totals > 0, torch.tensor(float("nan"), dtype=torch.double))


def pair_partners(num_classes: int) -> Tensor:
    """Partner of each class when classes come in consecutive pairs (0,1), (2,3), ... (toy motions)."""
    return torch.arange(num_classes) ^ 1


def within_pair_accuracy(scores: Tensor, labels: Tensor, partners: Tensor) -> float:
    """Fraction of clips whose true class scores above its temporal-order partner."""
    partner = partners[labels]
    rows = torch.arange(len(labels))
    return float((scores[rows, labels] > scores[rows, partner]).double().mean())
