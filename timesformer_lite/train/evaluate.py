"""Evaluation: scoring every video of a loader, one view (validation) or many (the test protocol), into metrics.

Test protocol: every video gives V = num_clips x num_crops views (PaddleVideo/official K400: 1 clip from
`linspace`/dense sampling x 3 UniformCrops along the long side); the model scores every view and the scores
are averaged per video, as raw logits (`train.test_average=logits`, the official code and PaddleVideo) or as
softmax probabilities (`softmax`, mmaction2). Both rank classes almost always the same way; softmax keeps one
over-confident view from dominating. The protocol on a checkpoint, and the `test` command, are `protocol.py`;
the files it writes, `report.py`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils import average_views
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
    scores_t, labels_t, indices_t, skipped = _score(model, loader, device, amp, average, num_classes)
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


def _score(
    model: nn.Module, loader, device: torch.device, amp: str, average: str, num_classes: int
) -> tuple[Tensor, Tensor, Tensor, int]:
    """This rank's videos: scores (videos, classes) on the CPU, labels, dataset indices, and the unreadable count;
    a batch in which no video was readable is counted and passed over. Restores the model's mode."""
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
    if not scores:
        return torch.empty(0, num_classes), empty, empty.clone(), skipped
    return torch.cat(scores), torch.cat(labels), torch.cat(indices), skipped


def _first_occurrences(indices: Tensor) -> Tensor:
    seen, keep = set(), []
    for k, i in enumerate(indices.tolist()):
        if i not in seen:
            seen.add(i)
            keep.append(k)
    return torch.tensor(keep, dtype=torch.long)
