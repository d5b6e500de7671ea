"""Optimisers and learning-rate schedules: the reference recipe and AdamW + warmup + cosine.

Reference (official TimeSformer / PaddleVideo): SGD with Nesterov momentum 0.9, lr 0.005 for a global batch
of 64 clips (scaled linearly with the real global batch), weight decay 1e-4 on every parameter, 15 epochs,
x0.1 at epochs 11 and 14. AdamW (the toy recipe) decays weight matrices only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig


def scaled_lr(cfg: TrainConfig, global_batch: int) -> float:
    """The linear scaling rule: `lr` is quoted for `lr_batch` clips per optimizer step."""
    return cfg.lr * global_batch / cfg.lr_batch


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD (Nesterov) with decay on every parameter, as the reference; or AdamW without decay on biases,
    norms and the cls/position/time embeddings."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adamw":
        skip = getattr(model, "no_weight_decay", lambda: set())()
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    raise ValueError(f"train.optimizer={cfg.optimizer!r} is not one of sgd, adamw")


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr at optimizer step `step` (0-based), stepped every optimizer step."""
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "step":
        epoch = step / steps_per_epoch
        return 0.1 ** sum(epoch >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    raise ValueError(f"train.schedule={cfg.schedule!r} is not one of step, cosine")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(cfg, 0, steps_per_epoch)  # validate the schedule name now, not mid-run
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch))
