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

import contextlib
import json
import math
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
from ..weights.checkpoint import read_trainer_checkpoint
from ..weights.io import atomic_write
from .checkpoint import (
    FORMAT,
    RunFolder,
    config_changes,
    find_resume,
    interrupts_deferred,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .distributed import DistEnv, all_reduce_sum, setup, teardown
from .evaluate import EvalResult, autocast_for, evaluate, summary_line, test_protocol
from .optim import build_optimizer, build_scheduler, scaled_lr
from .options import apply_training_options, training_options


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the run can resume from."""


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
            f.flush()
            os.fsync(f.fileno())  # the line is on disk before the checkpoint that follows it
        if self.tb is not None:
            step = record.get("global_step", 0)
            for k, v in record.items():
                if isinstance(v, int | float) and k not in ("epoch", "global_step") and v is not None:
                    self.tb.add_scalar(f"{record.get('split', 'train')}/{k}", v, step)

    def rewind(self, epoch: int, global_step: int) -> None:
        """Drop the records a resume from (epoch, global_step) will write again: epoch lines past `epoch`,
        other lines past `global_step`, and a line cut by a kill. A save that failed after its epoch line
        was written, or a kill between the two, would otherwise leave that epoch twice in the file."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            if record.get("split") == "epoch" and record.get("epoch", 0) > epoch:
                continue
            if record.get("split") != "epoch" and record.get("global_step", 0) > global_step:
                continue
            kept.append(line + "\n")
        atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(kept)))

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
    # the main process holds the run folder for the whole run: a second training there fails at once
    folder = None
    try:
        if env.main:
            folder = RunFolder(Path(cfg.train.out_dir) / cfg.train.name)
        return Trainer(cfg, env).fit()
    finally:
        if folder is not None:
            folder.close()
        teardown(env)


class Trainer:
    """Holds the state of one run; `fit()` does the work. Use `run()` rather than this class directly."""

    def __init__(self, cfg: Config, env: DistEnv) -> None:
        self.cfg, self.env = cfg, env
        t = cfg.train
        self.run_dir = Path(t.out_dir) / t.name  # held by `run` (RunFolder); train.name cannot leave out_dir
        self.saved_at: tuple[int, int] | None = None  # (epoch, step) that last.pt holds
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
        self.options = training_options(self.device)
        self.raw_model = apply_training_options(model, self.options)
        if t.compile:  # before the DDP wrap, as DDP's own hooks expect (and nanoGPT does)
            model = torch.compile(model)
        if env.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DDP(model, device_ids=ids, gradient_as_bucket_view=True)
        self.model = model
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
        self.epoch_totals, self.epoch_clips, self.epoch_seconds = torch.zeros(2, dtype=torch.float64), 0, 0.0
        self.epoch_start = time.perf_counter()
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
                epoch_totals=self.epoch_totals.cpu(),  # the current epoch so far: a resume continues its records
                epoch_clips=self.epoch_clips,
                epoch_seconds=time.perf_counter() - self.epoch_start if self.step_in_epoch else 0.0,
                train_clips=self.train_clips,
            )
        return state

    def save(self, name: str, with_training_state: bool = True) -> None:
        with interrupts_deferred():  # a Ctrl-C stops the run after the checkpoint is written and recorded
            if self.env.main:
                save_checkpoint(self.state(with_training_state), self.run_dir / name)
            if with_training_state:
                self.saved_at = (self.epoch, self.step_in_epoch)

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint with everything a resume needs, written by a run of the same config."""
        ckpt = read_trainer_checkpoint(path, training_state=True)
        changed = config_changes(ckpt["config"], self.cfg.to_dict())
        if changed:
            raise ValueError(
                f"cannot resume from '{path}': it was written with another config ({'; '.join(changed[:4])}); "
                "an exact resume needs the same settings: undo the change, or start a new run with another train.name"
            )
        self.raw_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        self.global_step = ckpt["global_step"]
        self.best_top1, self.best_epoch = ckpt["best_top1"], ckpt["best_epoch"]
        self.history, self.skipped = ckpt["history"], ckpt["skipped"]
        self.train_time, self.train_clips = ckpt["train_time"], ckpt["train_clips"]
        if "epoch_totals" in ckpt:  # written since the epoch's records survive a resume
            self.epoch_totals, self.epoch_clips = ckpt["epoch_totals"], ckpt["epoch_clips"]
            self.epoch_seconds = ckpt["epoch_seconds"]
        set_rng_state(ckpt["rng"])
        self.saved_at = (self.epoch, self.step_in_epoch)
        self.log.rewind(self.epoch, self.global_step)
        if self.env.main:
            print(f"resumed from {path}: epoch {self.epoch + 1}, step {self.step_in_epoch}/{self.steps_per_epoch}")

    # ---- the loop ----------------------------------------------------------------------------------------
    def fit(self) -> RunResult:
        """Train to `train.epochs`, validating and checkpointing each epoch, then test best.pt.

        Raises:
            TrainingInterrupted: on Ctrl-C, saying where the run can resume from.
        """
        try:
            return self._fit()
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.interrupted()) from None

    def interrupted(self) -> str:
        """Where an interrupted run stands and where it can resume from."""
        where = f"interrupted at epoch {self.epoch + 1}, step {self.step_in_epoch}/{self.steps_per_epoch}"
        if self.saved_at is None or not (self.run_dir / "last.pt").is_file():
            return f"{where}; no checkpoint was written yet, so a new run starts from the beginning"
        epoch, step = self.saved_at
        return (
            f"{where}; resume from '{self.run_dir / 'last.pt'}' (epoch {epoch + 1}, step {step}/{self.steps_per_epoch}) "
            "by running the same command with train.resume=auto"
        )

    def _fit(self) -> RunResult:
        t = self.cfg.train
        resume = find_resume(t.resume, self.run_dir)
        if resume is not None:
            self.resume(resume)  # before config.yaml is written: a refused resume leaves the run folder as it was
        if self.env.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.run_dir / "config.yaml", lambda tmp: Path(tmp).write_text(self.cfg.to_yaml()))
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
                self.skipped += val.skipped  # counted over every rank already
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
        """One epoch (or the rest of one, after a resume). The loss, accuracy and finiteness are accumulated on
        the device and read once per optimizer step, so a GPU never waits on the host within a step."""
        t = self.cfg.train
        sampler = self.train_loader.sampler
        sampler.set_epoch(self.epoch, start=self.step_in_epoch * t.grad_accum * t.batch_size)
        if self.step_in_epoch == 0:
            self.epoch_totals, self.epoch_clips, self.epoch_seconds = torch.zeros(2, dtype=torch.float64), 0, 0.0
        totals = self.epoch_totals = self.epoch_totals.to(self.device)  # loss sum, correct (this rank)
        self.epoch_start = time.perf_counter() - self.epoch_seconds  # the epoch's seconds before a resume count
        self.model.train()
        progress = tqdm(
            total=self.steps_per_epoch,
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch + 1}/{t.epochs}",
            disable=not _progress_enabled(self.env),
            leave=False,
        )
        step_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        micro = 0
        for batch in self.train_loader:
            if self.step_in_epoch >= self.steps_per_epoch:
                break
            self.skipped += batch["skipped"]
            video = batch["video"].to(self.device, non_blocking=True)
            labels = batch["label"].to(self.device, non_blocking=True)
            micro += 1
            last_micro = micro == t.grad_accum
            # DDP all-reduces gradients in the backward pass: only in a step's last micro-batch
            sync = contextlib.nullcontext() if last_micro or not isinstance(self.model, DDP) else self.model.no_sync()
            with sync:
                loss, logits = self.forward_backward(video, labels)
            step_loss += loss
            totals += torch.stack([loss * len(labels), (logits.argmax(1) == labels).sum().double()])
            self.epoch_clips += len(labels)
            if not last_micro:
                continue
            micro = 0
            mean_loss = self.checked_loss(step_loss / t.grad_accum)  # the step's one read of the device
            step_loss.zero_()
            self.optimizer_step()
            self.step_in_epoch += 1
            self.global_step += 1
            progress.update(1)
            clips_s = self.epoch_clips * self.env.world_size / max(time.perf_counter() - self.epoch_start, 1e-9)
            progress.set_postfix(loss=f"{mean_loss:.3f}", clips_s=f"{clips_s:.0f}")
            if t.checkpoint_every and self.global_step % t.checkpoint_every == 0:
                self.save("last.pt")
        progress.close()
        elapsed = time.perf_counter() - self.epoch_start
        totals = all_reduce_sum(torch.cat([totals, totals.new_tensor([self.epoch_clips])]), self.env).cpu()
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
        """Forward under autocast, backward outside it; returns the loss (float64, detached) and the logits."""
        t = self.cfg.train
        with autocast_for(self.device, t.amp):
            logits = self.model(video)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=t.label_smoothing)
        self.scaler.scale(loss / t.grad_accum).backward()
        return loss.detach().double(), logits.detach()

    def checked_loss(self, loss: torch.Tensor) -> float:
        """The step's mean loss over every rank, read once; stops the run (before the optimizer step, so the
        weights stay good) when any rank's loss is NaN or infinite."""
        value = all_reduce_sum(loss.reshape(1).clone(), self.env).item() / self.env.world_size
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"loss is {value} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1}: training stopped. "
                f"The last good checkpoint is kept at {self.run_dir / 'last.pt'}; lower train.lr, set "
                f"train.clip_grad (e.g. 1.0) or train.amp=none, then resume with train.resume=auto"
            )
        return value

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
            self.raw_model.load_state_dict(read_trainer_checkpoint(best)["model"])
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
