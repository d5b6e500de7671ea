"""Optimisers and learning-rate schedules: the reference recipe and AdamW + warmup + cosine.

Reference (official TimeSformer / PaddleVideo): SGD with Nesterov momentum 0.9, lr 0.005 for a global batch
of 64 clips (scaled linearly with the real global batch), weight decay 1e-4 on every parameter, 15 epochs,
x0.1 at epochs 11 and 14. AdamW (the toy recipe) decays weight matrices only.

Fine-tuning (the `finetune` preset) splits the parameters in two: the classifier (`head.*`) and everything
before it, the backbone. `train.backbone_lr_scale` gives the backbone a share of the head's learning rate
(both follow the same schedule); `train.head_only` freezes the backbone (`freeze_backbone`, before DDP or the
optimizer see the parameters), so only the head trains, a linear probe of the pretrained features.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig


def scaled_lr(cfg: TrainConfig, global_batch: int) -> float:
    """The linear scaling rule: `lr` is quoted for `lr_batch` clips per optimizer step."""
    return cfg.lr * global_batch / cfg.lr_batch


def is_head(name: str) -> bool:
    """The classifier's parameters (a new one when fine-tuning to other classes); the rest is the backbone."""
    return name.startswith("head.")


def freeze_backbone(model: nn.Module) -> int:
    """Stop gradients to every parameter but the head's (train.head_only); returns how many tensors were frozen."""
    frozen = [p for name, p in model.named_parameters() if not is_head(name)]
    for p in frozen:
        p.requires_grad_(False)
    return len(frozen)


def param_groups(model: nn.Module, cfg: TrainConfig, lr: float) -> list[dict]:
    """The optimizer's groups: parameters at the head's learning rate first (its lr is the one the trainer logs),
    then the backbone's at `lr * cfg.backbone_lr_scale` when that differs; with AdamW each is split again into
    decayed weight matrices and the rest (biases, norms, the cls/position/time embeddings). Frozen parameters are
    left out; empty groups dropped. At `backbone_lr_scale=1` the groups are the plain recipe's (SGD: one;
    AdamW: decayed, then not), so a checkpoint written before the split resumes.

    Args:
        model: the model (not a DDP or compiled wrapper: names must be the model's own).
        cfg: the recipe: `optimizer`, `weight_decay`, `backbone_lr_scale`.
        lr: the head's learning rate, already scaled for the global batch.
    """
    skip = getattr(model, "no_weight_decay", lambda: set())() if cfg.optimizer == "adamw" else set()
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = 1.0 if is_head(name) else cfg.backbone_lr_scale
            decay = cfg.optimizer == "sgd" or not (p.ndim <= 1 or name in skip)
            groups.setdefault((scale, decay), []).append(p)
    order = sorted(groups, key=lambda key: (key[0] != 1.0, not key[1]))
    return [
        {"params": groups[key], "lr": lr * key[0], "weight_decay": cfg.weight_decay if key[1] else 0.0} for key in order
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """SGD (Nesterov) with decay on every parameter, as the reference; or AdamW without decay on biases,
    norms and the cls/position/time embeddings. Groups as `param_groups` makes them."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups(model, cfg, lr), lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(param_groups(model, cfg, lr), lr=lr, betas=(0.9, 0.999))
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
