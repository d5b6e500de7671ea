"""The one training loop: CPU, one GPU, many GPUs (torchrun + DDP), notebooks and papermill alike.

    from timesformer_lite.train import run
    result = run("toy", ["train.epochs=2"])       # in-process (notebooks)
    torchrun --nproc_per_node=8 -m timesformer_lite train --config k400 model.pretrained=vit.npz

Per epoch: train (AMP, gradient accumulation, clipping), validate with the fast single-view protocol, write
runs/<name>/last.pt and, when validation top-1 improves, best.pt (atomically). At the end the reference test
protocol runs on best.pt and runs/<name>/summary.json records the numbers. Resume (train.resume=auto, a run
folder or a checkpoint) is exact: clip order and augmentation are functions of (seed, epoch, position), see
data/sampler.py. The step is `Trainer.train_step`, in nanoGPT's shape: the loss is read every train.log_every steps.
"""

from __future__ import annotations

import dataclasses
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

from ..config import Config
from ..data import build_dataset, build_loader, workers_for
from ..model import TimeSformer
from ..utils import accumulator_dtype, seed_everything
from ..weights.checkpoint import read_trainer_checkpoint
from ..weights.io import atomic_write
from .checkpoint import FORMAT, save_checkpoint
from .distributed import DistEnv, all_reduce_sum, setup, teardown
from .evaluate import EvalResult, autocast_for, evaluate
from .finetune import finetune_config
from .interrupts import interrupts_deferred
from .metrics_log import MetricsLog
from .optim import build_optimizer, build_scheduler, freeze_backbone, scaled_lr
from .options import options_of, resolve_options
from .protocol import test_protocol
from .report import summary_line
from .resume import config_changes, find_resume, rng_states, set_rng_state
from .run_folder import RunFolder


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

    @property
    def train_seconds(self) -> float:
        """Seconds spent training, over every epoch of the run (resumed ones included; validation and test not)."""
        return sum(epoch["seconds"] for epoch in self.history)


def _progress_enabled(env: DistEnv) -> bool:
    return env.main and sys.stderr.isatty() and not os.environ.get("CI")


def build_model(cfg: Config) -> TimeSformer:
    """A fresh model, or `model.pretrained` loaded (any format `load_pretrained` reads) for this config."""
    if not cfg.model.pretrained:
        return TimeSformer(cfg.model)
    from ..weights import load_pretrained

    # every field as the config states it, so the model is the one config.yaml records (a file that does not fit
    # is an error naming the keys; a timm ViT does not record its heads, so the config's count is the one used)
    fields = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k not in ("pretrained", "from_pretrained")}
    return load_pretrained(cfg.model.pretrained, **fields)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run(cfg: Config | str | dict, overrides: list[str] | dict | None = None) -> RunResult:
    """Train (and test) one configuration; returns a `RunResult`. Joins DDP when launched by torchrun."""
    cfg, finetuning = finetune_config(cfg, overrides)  # load_config, completed from model.pretrained when asked
    env = setup(cfg.train.device)
    if finetuning and env.main:
        print(finetuning, flush=True)
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
        model_cfg, notes = resolve_options(cfg.model, self.device)  # resolved: they travel with the config
        self.cfg = cfg = dataclasses.replace(cfg, model=model_cfg)
        for note in notes if env.main else ():
            print(note)
        model = build_model(cfg).to(self.device)
        if t.head_only:  # before DDP and the optimizer see the parameters
            freeze_backbone(model)
        model.set_grad_checkpointing(t.grad_checkpointing)
        self.raw_model = model
        if t.compile:  # before the DDP wrap, as DDP's own hooks expect (and nanoGPT does)
            model = torch.compile(model)
        if env.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DDP(model, device_ids=ids, gradient_as_bucket_view=True)
        self.model = model
        torch.manual_seed(t.seed + env.rank)  # dropout / drop path differ per rank
        self.build_loaders()
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
        # this rank's sums on the device, read once a log interval (`read_running`): the epoch's loss x clips and
        # correct clips, the loss of the steps since the last read and how many of them were not finite
        self.running = torch.zeros(4, dtype=accumulator_dtype(self.device), device=self.device)
        self.epoch_clips, self.epoch_skipped, self.epoch_seconds = 0, 0, 0.0  # this rank's, on the host
        self.epoch_so_far = [0.0, 0.0, 0.0, 0.0]  # every rank's loss x clips, correct, clips, skipped at the last read
        self.read_step, self.loss = 0, math.nan  # the global step of the last read, and the mean loss it read
        self.epoch_start = time.perf_counter()
        self.log = MetricsLog(self.run_dir, env.main)

    def build_loaders(self) -> None:
        """The training loader (shuffled, sharded over the ranks, whole batches), the validation loader, and the
        number of optimizer steps an epoch takes."""
        t = self.cfg.train
        common = {"num_workers": workers_for(self.cfg.data.num_workers, self.device), "seed": t.seed}
        distributed = self.env.distributed
        self.train_loader = build_loader(
            self.train_set, t.batch_size, shuffle=True, distributed=distributed, drop_last=True, **common
        )
        self.val_loader = build_loader(self.val_set, t.batch_size, shuffle=False, distributed=distributed, **common)
        batches = len(self.train_loader.sampler) // t.batch_size
        if batches < t.grad_accum:
            raise ValueError(
                f"{len(self.train_set)} training clips give {batches} batches of {t.batch_size} per process, "
                f"fewer than train.grad_accum={t.grad_accum}; lower train.batch_size or train.grad_accum"
            )
        self.steps_per_epoch = batches // t.grad_accum

    # ---- checkpoints -------------------------------------------------------------------------------------
    def state(self, rng: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The checkpoint: weights, config, classes, position; with `rng` (every rank's RNG state), also everything
        else a resume needs."""
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
        if rng is not None:
            state.update(
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                rng=rng,
                history=self.history,
                skipped=self.skipped,
                train_time=self.train_time,
                # the epoch so far, every rank's sums at the read before this save: a resume continues its records
                epoch_totals=torch.tensor(self.epoch_so_far[:2], dtype=torch.float64),
                epoch_clips=int(self.epoch_so_far[2]),
                epoch_skipped=int(self.epoch_so_far[3]),
                epoch_seconds=time.perf_counter() - self.epoch_start if self.step_in_epoch else 0.0,
                train_clips=self.train_clips,
            )
        return state

    def save(self, name: str, with_training_state: bool = True) -> None:
        """Write run_dir/name (rank 0), with everything a resume needs or the weights alone; every rank calls it."""
        rng = rng_states(self.env) if with_training_state else None  # every rank's: a collective, outside the hold
        with interrupts_deferred():  # a Ctrl-C stops the run after the checkpoint is written and recorded
            if self.env.main:
                save_checkpoint(self.state(rng), self.run_dir / name)
            if with_training_state:
                self.saved_at = (self.epoch, self.step_in_epoch)

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint with everything a resume needs, written by a run of the same config."""
        ckpt = read_trainer_checkpoint(path, training_state=True)
        refused, noted = config_changes(ckpt["config"], self.cfg.to_dict())
        if refused:
            raise ValueError(
                f"cannot resume from '{path}': it was written with another config ({'; '.join(refused[:4])}); "
                "an exact resume needs the same settings: undo the change, or start a new run with another train.name"
            )
        for change in noted if self.env.main else ():
            print(f"resuming with {change}: the run goes on, no longer bitwise the one that was not stopped")
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
            self.epoch_seconds = ckpt["epoch_seconds"]
            if self.env.main:  # every rank's sums so far: they go to one rank, to be added up once
                self.running[:2] = ckpt["epoch_totals"].to(self.running)
                self.epoch_clips, self.epoch_skipped = ckpt["epoch_clips"], ckpt.get("epoch_skipped", 0)
        set_rng_state(ckpt["rng"], self.env.rank)
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
        """One epoch (or the rest of one, after a resume): `train_step` over groups of `train.grad_accum` batches,
        and the bookkeeping around it: the progress bar, one read of the loss every `train.log_every` steps and
        before every save (so that no checkpoint holds the weights of a non-finite step), periodic saves."""
        t = self.cfg.train
        self.start_epoch()
        progress = tqdm(
            total=self.steps_per_epoch,
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch + 1}/{t.epochs}",
            disable=not _progress_enabled(self.env),
            leave=False,
        )
        batches = iter(self.train_loader)
        while self.step_in_epoch < self.steps_per_epoch:
            self.train_step([next(batches) for _ in range(t.grad_accum)])
            self.step_in_epoch += 1
            self.global_step += 1
            progress.update()
            if self.step_in_epoch == self.steps_per_epoch:
                break  # the epoch's end reads and saves
            save = t.checkpoint_every and self.global_step % t.checkpoint_every == 0
            if save or self.global_step % t.log_every == 0:
                self.read_running()
                clips_s = self.epoch_clips * self.env.world_size / max(time.perf_counter() - self.epoch_start, 1e-9)
                progress.set_postfix(loss=f"{self.loss:.3f}", clips_s=f"{clips_s:.0f}")
            if save:
                self.save("last.pt")
        progress.close()
        elapsed = time.perf_counter() - self.epoch_start
        loss, correct, clips, skipped = self.read_running()
        self.train_time, self.train_clips, self.skipped = (
            self.train_time + elapsed,
            self.train_clips + int(clips),
            self.skipped + int(skipped),
        )
        return {
            "loss": loss / max(clips, 1),
            "top1": correct / max(clips, 1),
            "lr": self.optimizer.param_groups[0]["lr"],
            "clips_per_s": clips / max(elapsed, 1e-9),
            "seconds": elapsed,
            "skipped": int(skipped),
        }

    def start_epoch(self) -> None:
        """Point the sampler at this epoch (at this step, after a resume) and start the epoch's sums."""
        t = self.cfg.train
        self.train_loader.sampler.set_epoch(self.epoch, start=self.step_in_epoch * t.grad_accum * t.batch_size)
        if self.step_in_epoch == 0:
            self.running.zero_()
            self.epoch_clips, self.epoch_skipped, self.epoch_seconds = 0, 0, 0.0
        self.read_step = self.global_step
        self.epoch_start = time.perf_counter() - self.epoch_seconds  # the epoch's seconds before a resume count
        self.model.train()

    def train_step(self, batches: list[dict[str, Any]]) -> None:
        """One optimizer step over `train.grad_accum` micro-batches, in nanoGPT's shape.

        Nothing here waits for the device: the loss, the accuracy and whether the loss stayed finite are added to
        `self.running` on it and read every `train.log_every` steps (`read_running`). A micro-batch in which every
        clip was unreadable teaches nothing: it runs one all-zero placeholder clip, its loss multiplied by 0, so
        that under DDP its rank takes part in the gradient all-reduce like every other (the others' clips make the
        step, and no rank waits for one that skipped). A step none of whose micro-batches had a clip changes no
        weight in a single process; under DDP, where that is known only to each rank, every rank takes it alike.
        """
        t, model = self.cfg.train, self.model
        step_loss = torch.zeros((), dtype=self.running.dtype, device=self.device)
        for micro, batch in enumerate(batches):
            n = len(batch["label"])
            video, labels = self.inputs(batch)
            if isinstance(model, DDP):  # all-reduce the gradients in the step's last backward only
                model.require_backward_grad_sync = micro == len(batches) - 1
            with autocast_for(self.device, t.amp):
                logits = model(video)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=t.label_smoothing) * (n > 0)
            self.scaler.scale(loss / t.grad_accum).backward()
            loss = loss.detach().to(step_loss.dtype)
            step_loss += loss / t.grad_accum
            self.running[:2] += torch.stack([loss * n, (logits.detach().argmax(1) == labels).sum() * (n > 0)])
            self.epoch_clips += n
            self.epoch_skipped += batch["skipped"]
        self.running[2:] += torch.stack([step_loss, (~step_loss.isfinite()).to(step_loss.dtype)])
        if self.env.distributed or any(len(b["label"]) for b in batches):
            if t.clip_grad > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.raw_model.parameters(), t.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's clips (B, T, C, H, W) and labels (B,) on the device; for a batch without a readable clip,
        one all-zero placeholder clip (see `train_step`)."""
        if len(batch["label"]):
            return batch["video"].to(self.device, non_blocking=True), batch["label"].to(self.device, non_blocking=True)
        m = self.cfg.model
        video = torch.zeros(1, m.num_frames, m.in_chans, m.img_size, m.img_size, device=self.device)
        return video, torch.zeros(1, dtype=torch.long, device=self.device)

    def read_running(self) -> list[float]:
        """Add every rank's running sums up and read them: the one collective, and the one read of the device, of
        a log interval. Sets `self.loss` (the mean loss of the steps since the last read) and `self.epoch_so_far`.

        Returns:
            The epoch so far, over every rank: loss x clips, correct clips, clips, unreadable clips skipped.

        Raises:
            TrainingDiverged: a step since the last read had a NaN or infinite loss on some rank.
        """
        local = torch.cat([self.running, self.running.new_tensor([self.epoch_clips, self.epoch_skipped])])
        loss, correct, interval, diverged, clips, skipped = all_reduce_sum(local, self.env).tolist()
        steps = (self.global_step - self.read_step) * self.env.world_size
        self.running[2:] = 0
        self.read_step, self.loss = self.global_step, interval / max(steps, 1)
        if diverged:
            raise TrainingDiverged(
                f"loss is {self.loss} in the steps up to epoch {self.epoch + 1}, step {self.step_in_epoch}: training "
                f"stopped. The last good checkpoint is kept at {self.run_dir / 'last.pt'}; lower train.lr, set "
                f"train.clip_grad (e.g. 1.0) or train.amp=none, then resume with train.resume=auto"
            )
        self.epoch_so_far = [loss, correct, clips, skipped]
        return self.epoch_so_far

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
            "model_options": options_of(self.cfg.model),  # the training-speed options in force
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
