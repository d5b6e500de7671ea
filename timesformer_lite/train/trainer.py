"""The one training loop: CPU, one GPU, many GPUs (torchrun + DDP), notebooks and papermill alike.

    from timesformer_lite.train import run
    result = run("toy", ["train.epochs=2"])       # in-process (notebooks)
    torchrun --nproc_per_node=8 -m timesformer_lite train --config k400 model.pretrained=vit.npz

Per epoch: train (AMP, gradient accumulation, clipping), validate with the fast single-view protocol, write
runs/<name>/last.pt and, when validation top-1 improves, best.pt (atomically). At the end the reference test
protocol runs on best.pt and runs/<name>/summary.json records the numbers. Resume (train.resume=auto|path)
is exact: clip order and augmentation are functions of (seed, epoch, position), see data/sampler.py.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from ..config import Config, load_config
from ..data import build_dataset, build_loader, workers_for
from ..model import TimeSformer
from ..utils import seed_everything
from .checkpoint import FORMAT, atomic_save, find_resume, load_training_checkpoint, rng_state, set_rng_state
from .distributed import DistEnv, all_reduce_sum, setup, teardown
from .evaluate import EvalResult, autocast_for, evaluate, summary_line, test_protocol
from .optim import build_optimizer, build_scheduler, scaled_lr


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunResult:
    """What `run` returns: where everything went and the numbers that matter."""

    run_dir: Path
    best_val_top1: float
    best_epoch: int
    test: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"


def _progress_enabled(env: DistEnv) -> bool:
    return env.main and sys.stderr.isatty() and not os.environ.get("CI")


class MetricsLog:
    """runs/<name>/metrics.jsonl (one JSON object per line), plus TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            step = record.get("global_step", 0)
            for k, v in record.items():
                if isinstance(v, int | float) and k not in ("epoch", "global_step") and v is not None:
                    self.tb.add_scalar(f"{record.get('split', 'train')}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def build_model(cfg: Config) -> TimeSformer:
    """A fresh model, or `model.pretrained` loaded (any format `load_pretrained` reads) for this config."""
    if not cfg.model.pretrained:
        return TimeSformer(cfg.model)
    from ..weights import load_pretrained

    return load_pretrained(
        cfg.model.pretrained,
        num_classes=cfg.model.num_classes,
        num_frames=cfg.model.num_frames,
        img_size=cfg.model.img_size,
        attention_type=cfg.model.attention_type,
        drop_path_rate=cfg.model.drop_path_rate,
    )


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run(cfg: Config | str | dict, overrides: list[str] | dict | None = None) -> RunResult:
    """Train (and test) one configuration; returns a `RunResult`. Joins DDP when launched by torchrun."""
    cfg = load_config(cfg, overrides)
    env = setup(cfg.train.device)
    try:
        return Trainer(cfg, env).fit()
    finally:
        teardown(env)


class Trainer:
    """Holds the state of one run; `fit()` does the work. Use `run()` rather than this class directly."""

    def __init__(self, cfg: Config, env: DistEnv) -> None:
        self.cfg, self.env = cfg, env
        t = cfg.train
        self.run_dir = Path(t.out_dir) / t.name
        self.device = env.device
        seed_everything(t.seed)  # identical initial weights on every rank
        self.train_set = build_dataset(cfg, "train")
        self.val_set = build_dataset(cfg, "val")
        self.classes = self.train_set.classes
        if len(self.classes) != cfg.model.num_classes:
            raise ValueError(
                f"the dataset has {len(self.classes)} classes but model.num_classes={cfg.model.num_classes}; "
                f"set model.num_classes={len(self.classes)}"
            )
        self.pairs = cfg.data.dataset == "toy"
        model = build_model(cfg).to(self.device)
        model.set_grad_checkpointing(t.grad_checkpointing)
        self.raw_model = model
        if env.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DDP(model, device_ids=ids, gradient_as_bucket_view=True)
        self.model = torch.compile(model) if t.compile else model
        torch.manual_seed(t.seed + env.rank)  # dropout / drop path differ per rank
        workers = workers_for(cfg.data.num_workers, self.device)
        self.train_loader = build_loader(
            self.train_set,
            t.batch_size,
            shuffle=True,
            num_workers=workers,
            seed=t.seed,
            distributed=env.distributed,
            drop_last=True,
        )
        self.val_loader = build_loader(
            self.val_set,
            t.batch_size,
            shuffle=False,
            num_workers=workers,
            seed=t.seed,
            distributed=env.distributed,
        )
        batches = len(self.train_loader.sampler) // t.batch_size
        if batches < t.grad_accum:
            raise ValueError(
                f"{len(self.train_set)} training clips give {batches} batches of {t.batch_size} per process, "
                f"fewer than train.grad_accum={t.grad_accum}; lower train.batch_size or train.grad_accum"
            )
        self.steps_per_epoch = batches // t.grad_accum
        self.global_batch = t.batch_size * t.grad_accum * env.world_size
        self.lr = scaled_lr(t, self.global_batch)
        self.optimizer = build_optimizer(self.raw_model, t, self.lr)
        self.scheduler = build_scheduler(self.optimizer, t, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.amp == "fp16")
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_top1, self.best_epoch = -1.0, -1
        self.history: list[dict[str, Any]] = []
        self.skipped = 0
        self.train_time, self.train_clips = 0.0, 0
        self.log = MetricsLog(self.run_dir, env.main)

    # ---- checkpoints -------------------------------------------------------------------------------------
    def state(self, with_training_state: bool = True) -> dict[str, Any]:
        state = {
            "format": FORMAT,
            "version": 1,
            "model": self.raw_model.state_dict(),
            "config": self.cfg.to_dict(),
            "classes": list(self.classes),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_top1": self.best_top1,
            "best_epoch": self.best_epoch,
        }
        if with_training_state:
            state.update(
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                rng=rng_state(),
                history=self.history,
                skipped=self.skipped,
                train_time=self.train_time,
                train_clips=self.train_clips,
            )
        return state

    def save(self, name: str, with_training_state: bool = True) -> None:
        if self.env.main:
            atomic_save(self.state(with_training_state), self.run_dir / name)

    def resume(self, path: Path) -> None:
        ckpt = load_training_checkpoint(path)
        self.raw_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        self.global_step = ckpt["global_step"]
        self.best_top1, self.best_epoch = ckpt["best_top1"], ckpt["best_epoch"]
        self.history, self.skipped = ckpt["history"], ckpt["skipped"]
        self.train_time, self.train_clips = ckpt["train_time"], ckpt["train_clips"]
        set_rng_state(ckpt["rng"])
        if self.env.main:
            print(f"resumed from {path}: epoch {self.epoch + 1}, step {self.step_in_epoch}/{self.steps_per_epoch}")

    # ---- the loop ----------------------------------------------------------------------------------------
    def fit(self) -> RunResult:
        t = self.cfg.train
        if self.env.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(self.cfg.to_yaml())
        resume = find_resume(t.resume, self.run_dir)
        if resume is not None:
            self.resume(resume)
        if self.env.main:
            n = sum(p.numel() for p in self.raw_model.parameters())
            print(
                f"training {t.name}: {n:,} parameters, {len(self.train_set)} train / {len(self.val_set)} val clips, "
                f"{self.env.world_size} process(es) on {self.device}, global batch {self.global_batch}, lr {self.lr:g}"
            )
        start = time.perf_counter()
        while self.epoch < t.epochs:
            train_stats = self.train_epoch()
            self.epoch, self.step_in_epoch = self.epoch + 1, 0  # from here on, epoch counts finished epochs
            record = {"epoch": self.epoch, "global_step": self.global_step, **train_stats}
            if self.epoch % t.eval_every == 0 or self.epoch == t.epochs:
                val = self.validate()
                record.update({f"val_{k}": v for k, v in val.metrics().items()})
                if val.top1 > self.best_top1:
                    self.best_top1, self.best_epoch = val.top1, self.epoch
                    self.save("best.pt", with_training_state=False)
            self.history.append(record)
            self.log.write({"split": "epoch", **record})
            self.print_epoch(record)
            self.save("last.pt")
        in_sync = self.ranks_in_sync()
        test = self.test() if t.test and self.env.main else None
        summary = self.summary(test, time.perf_counter() - start) | {"ranks_in_sync": in_sync}
        if self.env.main:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        self.log.close()
        return RunResult(
            run_dir=self.run_dir,
            best_val_top1=self.best_top1,
            best_epoch=self.best_epoch,
            test=test.metrics() if test else {},
            history=self.history,
            summary=summary,
        )

    def train_epoch(self) -> dict[str, float]:
        t = self.cfg.train
        sampler = self.train_loader.sampler
        sampler.set_epoch(self.epoch, start=self.step_in_epoch * t.grad_accum * t.batch_size)
        self.model.train()
        progress = tqdm(
            total=self.steps_per_epoch,
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch + 1}/{t.epochs}",
            disable=not _progress_enabled(self.env),
            leave=False,
        )
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, clips (this rank)
        micro, tic, clips = 0, time.perf_counter(), 0
        for batch in self.train_loader:
            if self.step_in_epoch >= self.steps_per_epoch:
                break
            self.skipped += batch["skipped"]
            video = batch["video"].to(self.device, non_blocking=True)
            labels = batch["label"].to(self.device, non_blocking=True)
            sync = micro + 1 == t.grad_accum or not isinstance(self.model, DDP)
            with autocast_for(self.device, t.amp):
                if isinstance(self.model, DDP) and not sync:
                    with self.model.no_sync():
                        loss, logits = self.forward_backward(video, labels)
                else:
                    loss, logits = self.forward_backward(video, labels)
            totals += torch.tensor(
                [loss.item() * len(labels), (logits.argmax(1) == labels).sum().item(), len(labels)], dtype=torch.float64
            )
            clips += len(labels)
            micro += 1
            if micro < t.grad_accum:
                continue
            micro = 0
            self.optimizer_step()
            self.step_in_epoch += 1
            self.global_step += 1
            progress.update(1)
            elapsed = time.perf_counter() - tic
            progress.set_postfix(loss=f"{loss.item():.3f}", clips_s=f"{clips * self.env.world_size / elapsed:.0f}")
            if t.checkpoint_every and self.global_step % t.checkpoint_every == 0:
                self.save("last.pt")
        progress.close()
        elapsed = time.perf_counter() - tic
        totals = all_reduce_sum(totals.to(self.device), self.env).cpu()
        self.train_time += elapsed
        self.train_clips += int(totals[2])
        return {
            "loss": float(totals[0] / max(totals[2], 1)),
            "top1": float(totals[1] / max(totals[2], 1)),
            "lr": self.optimizer.param_groups[0]["lr"],
            "clips_per_s": float(totals[2]) / max(elapsed, 1e-9),
            "seconds": elapsed,
        }

    def forward_backward(self, video: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.cfg.train
        logits = self.model(video)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=t.label_smoothing)
        finite = torch.tensor([float(torch.isfinite(loss))], device=self.device)
        if all_reduce_sum(finite, self.env).item() < self.env.world_size:
            raise TrainingDiverged(
                f"loss is {loss.item()} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}: training stopped. "
                f"The last good checkpoint is kept at {self.run_dir / 'last.pt'}; lower train.lr, set "
                f"train.clip_grad (e.g. 1.0) or train.amp=none, then resume with train.resume=auto"
            )
        self.scaler.scale(loss / t.grad_accum).backward()
        return loss.detach(), logits.detach()

    def optimizer_step(self) -> None:
        t = self.cfg.train
        if t.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.raw_model.parameters(), t.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def validate(self) -> EvalResult:
        return evaluate(
            self.model,
            self.val_loader,
            device=self.device,
            num_classes=self.cfg.model.num_classes,
            env=self.env,
            amp=self.cfg.train.amp,
            pairs=self.pairs,
        )

    def test(self) -> EvalResult | None:
        """The reference test protocol on best.pt (rank 0 only); writes the report into run_dir/test."""
        best = self.run_dir / "best.pt"
        if best.is_file():
            self.raw_model.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["model"])
        result, _ = test_protocol(self.raw_model, self.cfg, self.device, self.run_dir / "test")
        self.skipped += result.skipped
        print(summary_line(result))
        return result

    def ranks_in_sync(self) -> bool:
        """DDP keeps replicas identical; check it (every rank's weights match rank 0's) rather than trust it."""
        if not self.env.distributed:
            return True
        flat = torch.cat([p.detach().double().flatten() for p in self.raw_model.parameters()])
        reference = flat.clone()
        torch.distributed.broadcast(reference, src=0)
        same = torch.tensor([float(torch.equal(flat, reference))], device=self.device)
        return bool(all_reduce_sum(same, self.env).item() == self.env.world_size)

    def print_epoch(self, r: dict[str, Any]) -> None:
        if not self.env.main:
            return
        line = (
            f"epoch {r['epoch']:>2}/{self.cfg.train.epochs}  loss {r['loss']:.3f}  train top-1 {r['top1']:.1%}  "
            f"{r['clips_per_s']:.0f} clips/s"
        )
        if "val_top1" in r:
            line += f"  | val top-1 {r['val_top1']:.1%}"
            if r.get("val_within_pair") is not None:
                line += f"  within-pair {r['val_within_pair']:.1%}"
        print(line, flush=True)

    def summary(self, test: EvalResult | None, wall: float) -> dict[str, Any]:
        return {
            "name": self.cfg.train.name,
            "attention_type": self.cfg.model.attention_type,
            "epochs": self.epoch,
            "best_val_top1": self.best_top1,
            "best_epoch": self.best_epoch,
            "test_top1": test.top1 if test else None,
            "test_top5": test.top5 if test else None,
            "test_within_pair": test.within_pair if test else None,
            "wall_time_s": wall,
            "train_clips_per_s": self.train_clips / max(self.train_time, 1e-9),
            "peak_memory_mb": peak_memory_mb(self.device),
            "bad_videos_skipped": self.skipped,
            "world_size": self.env.world_size,
            "global_batch": self.global_batch,
            "history": self.history,
        }
