"""Model speed against Hugging Face Timesformer with the same weights, every contender in one interleaved run.

    python benchmarks/bench_model.py --suite cpu --threads 1   # the CPU rows of issues 13 and 22 (~17 min)
    python benchmarks/bench_model.py --suite cpu --threads 1 --record   # ... and make it the README's table
    bash benchmarks/gpu_suite.sh --compile                     # the GPU rows (it runs --suite gpu here)
    python benchmarks/bench_model.py forward --batch 4 --threads 1 [--dtype bf16] [--compile default]
    python benchmarks/bench_model.py train --preset toy        # forward, train, mfu, saved, stall: one row each
    python benchmarks/bench_model.py --help

Contenders, all holding HF's random weights (converted through `state_dict_from_hf`), so that they compute
the same function and their logits are compared too:

    HF                  `transformers.TimesformerForVideoClassification`, eager, as its users run it
    tl.fuse(model)      the inference model `tl.fuse(model, dtype=...)` makes from the reference (inference rows)
    reference           `tl.TimeSformer` as it is
    reference+options   the reference built with the training options the trainer resolves for the device
    torch.compile(...)  the reference (or reference+options) compiled (`--compile MODE`; the CPU suite: default)
    tl.fuse at COMMIT   a past commit's package, unpacked beside this one (`--baseline`, default b059a52 and
    model of COMMIT     04d1ef8): its `tl.fuse` of its model where it has one, else its model
    plain GEMM          one `a @ b` of TimeSformer-B's MLP shape, 1568x768 @ 768x3072 (the GFLOP/s rows)

Protocol (shared/reference/performance.md section 7): same process, device, input, dtype policy, batch and
thread count; warm-up rounds, then the contenders interleaved (A, B, C, A, B, C, ...) so that drift hits all
alike; medians with p10/p90. Rows print each ratio beside its issue's target; the run is appended, dated and
with a line naming the machine, to benchmarks/RESULTS.md under "## Model speed vs Hugging Face" unless
--no-append. dtype policy: fp32 everywhere for "fp32"; for "bf16", fp32 weights under bf16 autocast, for
inference and training alike (the trainer's `amp=bf16`), except tl.fuse(model), which is its own bf16 path:
`tl.fuse(model, dtype=torch.bfloat16)` on the clip cast to bf16. bf16 logits are compared with the fp32
reference's. A CPU without native bf16 (AVX512-BF16 or AMX) skips the bf16 speed rows, saying so.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # the checkout's package, run as a script

from baseline import baseline_model, load_package  # noqa: E402
from results import README, append_results, cpu_model, write_block  # noqa: E402

from timesformer_lite.config import ModelConfig, load_config  # noqa: E402
from timesformer_lite.fuse import fuse, native_bf16  # noqa: E402
from timesformer_lite.model import TimeSformer  # noqa: E402
from timesformer_lite.train.options import options_of, resolve_options  # noqa: E402
from timesformer_lite.utils import model_flops  # noqa: E402
from timesformer_lite.weights.hf import config_to_hf, state_dict_from_hf  # noqa: E402

SECTION = "## Model speed vs Hugging Face"
# the recorded CPU suite (`--suite cpu --record`): its rows, and the README block written from them
RECORDED = Path(__file__).resolve().parent / "speed_cpu.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# issue 22's "today's main" (tl.fuse before it became a reparameterization) and issue 13's hand-tuned model
BASELINES = ("b059a52", "04d1ef8")
FUSED = "tl.fuse(model)"
GEMM_SHAPE = (1568, 768, 3072)  # TimeSformer-B's MLP fc1 at 8x224: (tokens x D) @ (D x 4D)
TARGETS = {  # issues 13 and 22 ("<=" for memory and logit differences, ">=" for the rest)
    "forward_cpu": 1.25,  # tl.fuse(model) / HF, fp32, one thread
    "reference_cpu": 1.05,  # the plain reference / HF, same rows
    "fused_vs_baseline": 1.0,  # tl.fuse(model) / each baseline commit's fused model (or model), same rows
    "train_cpu": 1.35,  # reference+options / HF, toy preset training step
    "bf16_cpu": 1.5,  # tl.fuse(model, dtype=bf16) / HF under bf16 autocast, CPUs with native bf16
    "gemm_fp32": 1.0,  # tl.fuse(model)'s GFLOP/s / a plain fp32 GEMM's of GEMM_SHAPE, same run
    "gemm_bf16": 0.6,  # the same in bf16
    "bf16_logits": 3e-2,  # max abs difference of bf16 logits to the fp32 reference's
    "forward_gpu": 1.5,
    "train_gpu": 1.3,
    "memory": 0.75,
    "mfu_inference": 0.45,
    "mfu_train": 0.30,
}


# ---------------------------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Seconds per call of one contender: median and the 10th / 90th percentiles."""

    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        q = statistics.quantiles(seconds, n=10, method="inclusive") if len(seconds) > 1 else seconds * 9
        return cls(statistics.median(seconds), q[0], q[-1])

    def rate(self, items: int) -> str:
        """`items` per second at the median, with the p10-p90 range (slow end first)."""
        return f"{items / self.median:.3g} ({items / self.p90:.3g}-{items / self.p10:.3g})"


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock time covers the work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    contenders: dict[str, Callable[[], object]], device: torch.device, warmup: int, reps: int
) -> dict[str, Timing]:
    """Time each contender `reps` times, alternating A, B, C, A, ... after `warmup` rounds of each."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(warmup + reps):
        for name, fn in contenders.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            if i >= warmup:
                seconds[name].append(time.perf_counter() - start)
    return {name: Timing.of(s) for name, s in seconds.items()}


# ---------------------------------------------------------------------------------------------- models


def base_config() -> ModelConfig:
    """TimeSformer-B 8x224, 400 classes, exactly `TimesformerConfig(num_labels=400)` (no stochastic depth)."""
    return ModelConfig(num_classes=400, drop_path_rate=0.0)


def model_config_for(preset: str) -> ModelConfig:
    """'base' or any preset name (its `model` section)."""
    return base_config() if preset == "base" else load_config(preset).model


def hf_and_reference(cfg: ModelConfig, device: torch.device, seed: int = 0) -> tuple[nn.Module, TimeSformer]:
    """The HF peer with random weights, and the reference model holding the very same weights."""
    try:
        from transformers import TimesformerConfig, TimesformerForVideoClassification
    except ImportError as e:  # a dev dependency, not a runtime one
        raise ValueError("the benchmark compares against Hugging Face: pip install transformers") from e
    torch.manual_seed(seed)
    hf = TimesformerForVideoClassification(TimesformerConfig(**config_to_hf(cfg)))
    ref = TimeSformer(cfg)
    state, unmapped = state_dict_from_hf(hf.state_dict())
    if unmapped:
        raise RuntimeError(f"HF parameters with no name of ours: {unmapped}")
    ref.load_state_dict(state, strict=True)
    return hf.to(device), ref.to(device)


def hf_logits(hf: nn.Module) -> Callable[[Tensor], Tensor]:
    """HF's forward as a function of the video, returning logits like ours."""
    return lambda video: hf(pixel_values=video).logits


def compile_warmup(warmup: int, mode: str | None) -> int:
    """Warm-up rounds when a contender is compiled in `mode`: the first call compiles, and "reduce-overhead"
    records its CUDA graphs over the next ones."""
    if mode is None:
        return warmup
    return max(warmup, 3 if mode == "reduce-overhead" else 1)


def baseline_of(commits: str | None) -> list[tuple[str, object]]:
    """(commit, its package) for each comma-separated baseline commit, leaving out (with the reason printed)
    those that cannot be loaded: no git, not a checkout, an unknown commit."""
    loaded = []
    for commit in commits.split(",") if commits else []:
        try:
            loaded.append((commit, load_package(commit)))
        except RuntimeError as e:
            print(f"skipping the baseline rows of {commit}: {e}", file=sys.stderr)
    return loaded


def baseline_contender(commit: str, package: object, ref: TimeSformer) -> tuple[str, Callable[[Tensor], Tensor]]:
    """The inference model of a past commit holding `ref`'s weights: its `tl.fuse` of its model where it has
    one ("tl.fuse at COMMIT"), else its model ("model of COMMIT")."""
    model = baseline_model(package, ref)
    if hasattr(package, "fuse"):
        return f"tl.fuse at {commit}", package.fuse(model)
    return f"model of {commit}", model.eval()


def random_video(cfg: ModelConfig, batch: int, device: torch.device, dtype: torch.dtype, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size, generator=g)
    return video.to(device=device, dtype=dtype)


def autocast(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    """bf16 autocast at bf16; a no-op context at fp32."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


@contextmanager
def strict_fp32():
    """fp32 that is fp32 on a GPU too: cuDNN convolutions use TF32 by default (the patch embedding), which
    would take the fp32 parity row to ~1e-3."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def precision(device: torch.device, dtype: torch.dtype):
    """The dtype policy's context: bf16 autocast, or strict fp32."""
    return strict_fp32() if dtype == torch.float32 else autocast(device, dtype)


# ---------------------------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One benchmark line: what, the two sides' figures, their ratio and the target it must meet."""

    name: str
    this: str
    other: str
    ratio: float
    target: float | None = None
    lower_is_better: bool = False
    note: str = ""

    @property
    def passed(self) -> bool | None:
        """Whether the ratio meets the target (None: the row has none)."""
        if self.target is None:
            return None
        return self.ratio <= self.target if self.lower_is_better else self.ratio >= self.target

    @property
    def bound(self) -> str:
        """The target as a bound, ">= 1.25" ("" without one)."""
        return "" if self.target is None else f"{'<=' if self.lower_is_better else '>='} {self.target:g}"

    @property
    def met(self) -> str:
        return "" if self.passed is None else f"{self.bound}: {'yes' if self.passed else 'NO'}"

    def markdown(self) -> str:
        return f"| {self.name} | {self.this} | {self.other} | **{self.ratio:.3g}** | {self.met} | {self.note} |"


def label(cfg: ModelConfig) -> str:
    return f"{cfg.num_frames}x{cfg.img_size} D{cfg.embed_dim} depth {cfg.depth}"


def dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


def speed_rows(
    what: str, t: dict[str, Timing], batch: int, pairs: list[tuple[str, str, float | None]], unit: str = "clips/s"
) -> list[Row]:
    """One row per (a, b, target) of `pairs`: a's speed over b's, from the medians in `t` (rows whose
    contenders did not run are left out)."""
    rows = [
        Row(f"{what}: {a} / {b} ({unit})", t[a].rate(batch), t[b].rate(batch), t[b].median / t[a].median, target)
        for a, b, target in pairs
        if a in t and b in t
    ]
    for row in rows:  # a suite runs for many minutes: show each row as it is measured
        print(row.markdown(), file=sys.stderr, flush=True)
    return rows


@dataclass
class Parity:
    """Largest logit difference and top-1 agreement of one contender against HF on one input."""

    max_abs: float
    top1: float


def parity(ours: Callable[[Tensor], Tensor], want: Tensor, video: Tensor) -> Parity:
    a, b = ours(video).float(), want.float()
    return Parity((a - b).abs().max().item(), (a.argmax(1) == b.argmax(1)).float().mean().item())


def parity_row(fns: dict[str, Callable[[Tensor], Tensor]], video: Tensor, dtype: torch.dtype, what: str) -> Row:
    """Every contender's logits (under the dtype policy, no grad) against HF's in fp32, against the fp32
    reference's in bf16 (HF included): the ratio column is the largest difference of any of them."""
    device = video.device
    with torch.no_grad():
        if dtype == torch.float32:
            against, others = "HF", {k: fn for k, fn in fns.items() if k != "HF"}
        else:
            against, others = "the fp32 reference", {k: fn for k, fn in fns.items() if k != "reference"}
        with strict_fp32():
            want = fns["HF" if dtype == torch.float32 else "reference"](video)
        with precision(device, dtype):
            diffs = {k: parity(fn, want, video) for k, fn in others.items()}
    bound = 1e-4 if dtype == torch.float32 else TARGETS["bf16_logits"]
    worst = max(p.max_abs for p in diffs.values())
    ok = worst <= bound and all(p.top1 == 1.0 for p in diffs.values())
    top1 = min(p.top1 for p in diffs.values())
    note = f"bound {bound:g}, top-1 agreement {100 * top1:.0f} %: {'yes' if ok else 'NO'}"
    figures = ", ".join(f"{k} {p.max_abs:.1e}" for k, p in diffs.items())
    return Row(f"logits vs {against} (max abs diff), {what}", figures, "", worst, note=note)


def fused_call(fused: nn.Module, dtype: torch.dtype) -> Callable[[Tensor], Tensor]:
    """The fused model as a contender: in bf16 it is `tl.fuse(model, dtype=torch.bfloat16)` on the video cast
    to bf16, outside autocast (its own bf16 path), while the others run under bf16 autocast."""
    if dtype == torch.float32:
        return fused

    def call(video: Tensor) -> Tensor:
        with torch.autocast(video.device.type, enabled=False):
            return fused(video.to(dtype))

    return call


def inference_contenders(
    cfg: ModelConfig,
    device: torch.device,
    compile_mode: str | None,
    baselines: list[tuple[str, object]],
    dtype: torch.dtype = torch.float32,
) -> dict[str, Callable[[Tensor], Tensor]]:
    """HF, tl.fuse(model) (in `dtype`), the reference, optionally it compiled, and each baseline commit's
    inference model (`baseline_contender`): eval mode, one set of weights."""
    hf, ref = hf_and_reference(cfg, device)
    hf, ref = hf.eval(), ref.eval()
    fns = {"HF": hf_logits(hf), FUSED: fused_call(fuse(ref, dtype=dtype), dtype), "reference": ref}
    if compile_mode is not None:
        fns[f"torch.compile(reference, {compile_mode})"] = torch.compile(ref, mode=compile_mode)
    for commit, package in baselines:
        name, model = baseline_contender(commit, package, ref)
        fns[name] = model
    return fns


def plain_gemm(device: torch.device, dtype: torch.dtype) -> Callable[[], Tensor]:
    """One plain `a @ b` of `GEMM_SHAPE` in `dtype` (torch's matmul: MKL for fp32 and oneDNN for bf16 on the
    official CPU wheels), the speed a model's GFLOP/s are set against."""
    m, k, n = GEMM_SHAPE
    gen = torch.Generator().manual_seed(2)
    a, b = (torch.randn(*shape, generator=gen).to(device, dtype) for shape in ((m, k), (k, n)))
    return lambda: a @ b


def gemm_rows(what: str, t: dict[str, Timing], batch: int, flops: float, dtype: torch.dtype, target: float | None):
    """tl.fuse(model)'s and HF's GFLOP/s (the reference's FLOP count) over the plain GEMM's, timed in `t`."""
    m, k, n = GEMM_SHAPE
    plain = 2 * m * k * n / t["plain GEMM"].median
    rows = []
    for name, goal in ((FUSED, target), ("HF", None)):
        achieved = batch * flops / t[name].median
        row = Row(
            f"{what}: {name} / plain {dtype_name(dtype)} GEMM {m}x{k} @ {k}x{n} (GFLOP/s)",
            f"{achieved / 1e9:.0f}",
            f"{plain / 1e9:.0f}",
            achieved / plain,
            goal,
            note=f"{flops / 1e9:.1f} GFLOP per clip (the reference's count)",
        )
        print(row.markdown(), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def bench_forward(
    cfg: ModelConfig,
    batch: int,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    reps: int,
    targets: dict[str, float | None],
    compile_mode: str | None = None,
    baselines: list[tuple[str, object]] = (),
    peak: Peak | None = None,
    gemm: bool = False,
) -> list[Row]:
    """Inference clips/s of every contender (eval, no_grad), interleaved; ratios against HF and of tl.fuse
    against each baseline commit's model; the logit parity of each; given `peak`, tl.fuse's MFU; with `gemm`,
    a plain GEMM timed among the contenders and the GFLOP/s rows against it.

    Args:
        targets: "fused", "reference", "baseline" and "gemm": the targets of tl.fuse / HF, reference / HF,
            tl.fuse / each baseline and tl.fuse's GFLOP/s / the plain GEMM's (None: report only).
    """
    fns = inference_contenders(cfg, device, compile_mode, baselines, dtype)
    video = random_video(cfg, batch, device, torch.float32)
    with torch.no_grad(), precision(device, dtype):
        calls = {k: (lambda fn=fn: fn(video)) for k, fn in fns.items()}
        if gemm:
            calls["plain GEMM"] = plain_gemm(device, dtype)
        t = interleaved(calls, device, compile_warmup(warmup, compile_mode), reps)
    what = f"forward {label(cfg)} {dtype_name(dtype)} batch {batch}"
    others = [k for k in fns if k not in ("HF", FUSED, "reference")]
    pairs = [(FUSED, "HF", targets.get("fused")), ("reference", "HF", targets.get("reference"))]
    pairs += [(k, "HF", None) for k in others]
    pairs += [(FUSED, k, targets.get("baseline")) for k in others if " at " in k or k.startswith("model of ")]
    rows = speed_rows(what, t, batch, pairs)
    if gemm:
        rows += gemm_rows(what, t, batch, model_flops(cfg), dtype, targets.get("gemm"))
    rows.append(parity_row(fns, video, dtype, what.removeprefix("forward ")))
    if peak is not None:
        rows.append(mfu_row("inference", what, batch, t[FUSED].median, model_flops(cfg), peak))
    return rows


def parity_only(
    cfg: ModelConfig, batch: int, device: torch.device, dtype: torch.dtype, baselines: list[tuple[str, object]]
) -> list[Row]:
    """The parity row of `bench_forward` alone (no timing, nothing compiled)."""
    fns = inference_contenders(cfg, device, None, baselines, dtype)
    video = random_video(cfg, batch, device, torch.float32)
    return [parity_row(fns, video, dtype, f"{label(cfg)} {dtype_name(dtype)} batch {batch}")]


def train_step(model: Callable[[Tensor], Tensor], opt: torch.optim.Optimizer, video: Tensor, labels: Tensor, amp):
    """One AdamW step: forward under the dtype policy, cross-entropy, backward (outside autocast), update."""
    with amp:
        loss = F.cross_entropy(model(video).float(), labels)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def with_training_options(ref: TimeSformer, device: torch.device) -> TimeSformer:
    """The reference built with the options the trainer resolves for `device`, holding a copy of `ref`'s weights."""
    tuned = TimeSformer(resolve_options(ref.cfg, device)[0]).to(next(ref.parameters()).device)
    tuned.load_state_dict(ref.state_dict(), strict=True)
    return tuned


def training_contenders(
    cfg: ModelConfig, device: torch.device, compile_mode: str | None, baselines: list[tuple[str, object]] = ()
) -> dict[str, nn.Module]:
    """HF, the reference with the device's training options, the plain reference, optionally the former
    compiled and each past commit's model: train mode, each its own copy of one set of weights."""
    hf, ref = hf_and_reference(cfg, device)
    plain = copy.deepcopy(ref).train()
    tuned = with_training_options(ref, device).train()
    models = {"HF": hf.train(), "reference+options": tuned, "reference": plain}
    if compile_mode is not None:
        models[f"torch.compile(reference+options, {compile_mode})"] = torch.compile(
            copy.deepcopy(tuned), mode=compile_mode
        )
    for commit, package in baselines:
        models[f"model of {commit}"] = baseline_model(package, plain).train()
    return models


def bench_train(
    cfg: ModelConfig,
    batch: int,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    reps: int,
    target: float | None,
    compile_mode: str | None = None,
    baselines: list[tuple[str, object]] = (),
    peak: Peak | None = None,
) -> list[Row]:
    """Training-step clips/s (forward, backward, AdamW) of every contender, interleaved; on CUDA also peak
    memory; given `peak`, the MFU of the reference with its options (a step counted as 3 forward passes).

    Args:
        target: of reference+options / HF (None: report only).
    """
    models = training_contenders(cfg, device, compile_mode, baselines)
    video = random_video(cfg, batch, device, torch.float32)
    labels = torch.arange(batch, device=device) % max(cfg.num_classes, 1)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    fns = {k: hf_logits(m) if k == "HF" else m for k, m in models.items()}
    amp = autocast(device, dtype)
    steps = {k: (lambda k=k: train_step(fns[k], opts[k], video, labels, amp)) for k in fns}
    t = interleaved(steps, device, compile_warmup(warmup, compile_mode), reps)
    what = f"training step {label(cfg)} {dtype_name(dtype)} batch {batch}, AdamW"
    others = [k for k in models if k not in ("HF", "reference+options")]
    pairs = [("reference+options", "HF", target)] + [(k, "HF", None) for k in others]
    pairs += [("reference+options", k, None) for k in others if k.startswith("model of ")]
    rows = speed_rows(what, t, batch, pairs)
    rows[0].note = ", ".join(f"{k}={v}" for k, v in options_of(models["reference+options"].cfg).items())
    if peak is not None:
        rows.append(mfu_row("training", what, batch, t["reference+options"].median, 3 * model_flops(cfg), peak))
    if device.type == "cuda":
        # every contender stays resident: take the others' weights and optimizer state out of each peak
        state = {k: state_bytes(models[k], opts[k]) for k in models}
        held = {k: sum(v for j, v in state.items() if j != k) for k in models}
        used = {k: peak_step_memory(step, device) - held[k] for k, step in steps.items()}
        for k in models:
            if k != "HF":
                rows.append(
                    Row(
                        f"peak training memory {label(cfg)} {dtype_name(dtype)} batch {batch}: {k} / HF (GiB)",
                        f"{used[k] / 2**30:.2f}",
                        f"{used['HF'] / 2**30:.2f}",
                        used[k] / used["HF"],
                        TARGETS["memory"] if k == "reference+options" else None,
                        lower_is_better=True,
                    )
                )
    return rows


def saved_bytes(model: nn.Module, call: Callable[[Tensor], Tensor], video: Tensor, dtype: torch.dtype) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of `call(video)`, one training forward of
    `model`, its parameters not counted (each storage once, however many tensors view it)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = max(kept.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(video.device, dtype):
        call(video)
    return sum(kept.values())


def bench_saved(cfg: ModelConfig, dtype: torch.dtype, device: torch.device) -> list[Row]:
    """What training keeps for the backward pass, per clip and per step: the reference with the training
    options a GPU trainer resolves (`resolve_options(cfg, cuda)`) / HF. The peak-memory row's part that a CPU can
    measure. Per clip is batch 2 minus batch 1; per step the rest (e.g. weights cast for autocast, kept once
    whatever the batch)."""
    hf, ref = hf_and_reference(cfg, device)
    ref = with_training_options(ref, torch.device("cuda"))
    models = {"ours": (ref.train(), ref), "hf": (hf.train(), hf_logits(hf))}
    one, two = (random_video(cfg, b, device, torch.float32) for b in (1, 2))
    kept = {k: (saved_bytes(*m, one, dtype), saved_bytes(*m, two, dtype)) for k, m in models.items()}
    clip = {k: (b - a) / 2**20 for k, (a, b) in kept.items()}
    step = {k: (2 * a - b) / 2**20 for k, (a, b) in kept.items()}
    what = f"{label(cfg)} {dtype_name(dtype)}"
    note = f"plus once a step: ours {step['ours']:.0f}, HF {step['hf']:.0f} MiB; "
    note += ", ".join(f"{k}={v}" for k, v in options_of(ref.cfg).items())
    name = f"tensors kept for backward per clip, training {what}: reference+options(cuda) / HF (MiB)"
    return [Row(name, f"{clip['ours']:.0f}", f"{clip['hf']:.0f}", clip["ours"] / clip["hf"], None, True, note)]


def state_bytes(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    """Bytes of a model's parameters and its optimizer's state tensors."""
    tensors = list(model.parameters()) + [t for st in opt.state.values() for t in st.values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_step_memory(step: Callable[[], object], device: torch.device) -> int:
    """Bytes allocated at the peak of one training step (weights and optimizer state included)."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device)


@dataclass
class Peak:
    """The matmul speed MFU is measured against: FLOP/s of an n^3 product in `dtype`, measured in this run."""

    flops: float
    n: int
    dtype: torch.dtype


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 8192, reps: int = 10) -> Peak:
    """Achieved FLOP/s of an n^3 matmul in `dtype`: the "peak" MFU is measured against, in the same run."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = interleaved({"mm": lambda: a @ b}, device, warmup=2, reps=reps)["mm"]
    return Peak(2 * n**3 / t.median, n, dtype)


def mfu_row(what: str, name: str, batch: int, seconds: float, flops: float, peak: Peak) -> Row:
    """Model FLOP utilisation of one measured contender: `batch` clips of `flops` each in `seconds`."""
    achieved = batch * flops / seconds
    note = f"{flops / 1e9:.1f} GFLOP/clip, matmul peak {peak.flops / 1e12:.1f} TFLOP/s "
    note += f"({peak.n}^3 {dtype_name(peak.dtype)})"
    target = TARGETS["mfu_inference" if what == "inference" else "mfu_train"]
    who = "tl.fuse(model)" if what == "inference" else "reference+options"
    row = Row(f"MFU {what} {who}, {name}", f"{achieved / 1e12:.1f} TFLOP/s", "", achieved / peak.flops, target)
    row.note = note
    return row


def mfu_rows(
    cfg: ModelConfig,
    batch: int,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    reps: int,
    peak_n: int,
    compile_mode: str | None = None,
) -> list[Row]:
    """Model FLOP utilisation of inference (tl.fuse) and training (reference+options) against the matmul
    peak measured first."""
    peak = matmul_peak(device, dtype, peak_n)
    rows = bench_forward(cfg, batch, device, dtype, warmup, reps, {}, compile_mode, [], peak)
    rows += bench_train(cfg, batch, device, dtype, warmup, reps, None, compile_mode, [], peak)
    return [r for r in rows if r.name.startswith("MFU")]


def data_stall(preset: str, device: torch.device, dtype: torch.dtype, steps: int, root: str | None) -> list[Row]:
    """Fraction of training-step time spent waiting for the loader (a toy preset with its default workers).

    A small toy dataset (enough clips for `steps` batches) is generated into `root`, a temporary folder by
    default. Each step times `next(loader)` apart from the transfer, forward, backward and update of the
    reference with the device's training options; stall = waiting / total over the timed steps.
    """
    from timesformer_lite.data import build_dataset, build_loader, workers_for

    cfg = load_config(preset)
    if cfg.data.dataset != "toy":
        raise ValueError(
            f"the data-stall row generates toy data; preset {preset!r} has data.dataset={cfg.data.dataset}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        cfg.data.root = root or tmp
        cfg.data.toy_per_class = max((steps + 2) * cfg.train.batch_size // 10 + 1, 20)  # one epoch, 10 classes
        loader = build_loader(
            build_dataset(cfg, "train"),
            cfg.train.batch_size,
            shuffle=True,
            num_workers=workers_for(cfg.data.num_workers, device),
            seed=0,
            drop_last=True,
        )
        model = TimeSformer(resolve_options(cfg.model, device)[0]).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        amp = autocast(device, dtype)
        waits, totals = [], []
        it = iter(loader)
        for i in range(steps + 2):  # the first two steps start the workers and warm up: not counted
            synchronize(device)
            start = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            waited = time.perf_counter() - start
            video = batch["video"].to(device, non_blocking=True)
            train_step(model, opt, video, batch["label"].to(device), amp)
            synchronize(device)
            if i >= 2:
                waits.append(waited)
                totals.append(time.perf_counter() - start)
        workers = f"{loader.num_workers} workers (data.num_workers={cfg.data.num_workers})"
    stall = sum(waits) / sum(totals)
    note = f"{workers}, median step {1e3 * statistics.median(totals):.1f} ms, {steps} steps; target < 10 %"
    name = f"data stall, {preset} preset training {dtype_name(dtype)} batch {cfg.train.batch_size}"
    return [Row(name, f"{100 * stall:.1f} % of step time", "", stall, 0.10, lower_is_better=True, note=note)]


# ---------------------------------------------------------------------------------------------- suites


def cpu_suite(
    warmup: int,
    reps: int,
    compile_mode: str | None,
    baselines: list[tuple[str, object]],
    device: torch.device,
    base: ModelConfig | None = None,
    toy: tuple[ModelConfig, int] | None = None,
    bf16: bool | None = None,
) -> list[Row]:
    """Every CPU row of issues 13 and 22: fp32 forward of TimeSformer-B at batch 1 and 4 (tl.fuse, the
    reference, it compiled and each baseline commit's inference model, against HF, tl.fuse against each
    baseline, GFLOP/s against a plain fp32 GEMM), the same in bf16 (tl.fuse(model, dtype=torch.bfloat16)
    against HF under bf16 autocast, GFLOP/s against a plain bf16 GEMM, logits against the fp32 reference)
    where the CPU has native bf16 (`bf16`, default: `native_bf16()`; elsewhere the bf16 parity alone), the toy
    preset's fp32 training step, and the tensors kept for the backward pass of bf16 training (what the GPU
    memory row depends on). `base` and `toy` (its model and batch) are parameters so that a test can run the
    whole suite with tiny models."""
    base = base or base_config()
    if toy is None:
        preset = load_config("toy")
        toy = preset.model, preset.train.batch_size
    bf16 = native_bf16() if bf16 is None else bf16
    targets = {"fused": TARGETS["forward_cpu"], "reference": TARGETS["reference_cpu"]}
    targets.update(baseline=TARGETS["fused_vs_baseline"], gemm=TARGETS["gemm_fp32"])
    targets16 = dict(fused=TARGETS["bf16_cpu"], baseline=None, gemm=TARGETS["gemm_bf16"])
    rows: list[Row] = []
    for batch in (1, 4):
        rows += bench_forward(
            base, batch, device, torch.float32, warmup, reps, targets, compile_mode, baselines, gemm=True
        )
    for batch in (1, 4) if bf16 else ():
        rows += bench_forward(base, batch, device, torch.bfloat16, warmup, reps, targets16, None, baselines, gemm=True)
    if not bf16:
        print("skipping the bf16 speed rows: this CPU has no native bf16 (AVX512-BF16 or AMX)", file=sys.stderr)
        rows += parity_only(base, 1, device, torch.bfloat16, baselines)
    rows += bench_train(*toy, device, torch.float32, warmup, 3 * reps, TARGETS["train_cpu"], None, baselines)
    return rows + bench_saved(base, torch.bfloat16, device)


def gpu_suite(
    cfg: ModelConfig,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    reps: int,
    peak_n: int,
    compile_mode: str | None,
    baselines: list[tuple[str, object]],
    steps: int,
    data_root: str | None,
    batches: tuple[int, int, int, int] = (32, 16, 1, 4),
    stall_preset: str = "toy",
) -> list[Row]:
    """Every GPU row of issue 13: forward (batch 32: tl.fuse(model, dtype=...) against HF under autocast) and
    training (batch 16) against HF with MFU and peak memory, the reference compiled in `compile_mode` among the
    contenders when given; batch-1 latency (the reference under CUDA graphs when compiling); fp32 parity (batch
    4); the data stall of `stall_preset`'s training. `batches` and the preset are parameters so that a test can
    run the whole suite on a CPU."""
    forward, train, latency, parity_batch = batches
    peak = matmul_peak(device, dtype, peak_n)
    targets = {"fused": TARGETS["forward_gpu"], "baseline": TARGETS["fused_vs_baseline"]}
    rows = bench_forward(cfg, forward, device, dtype, warmup, reps, targets, compile_mode, baselines, peak)
    rows += bench_train(cfg, train, device, dtype, warmup, reps, TARGETS["train_gpu"], compile_mode, baselines, peak)
    latency_mode = "reduce-overhead" if compile_mode else None  # the launch-bound case CUDA graphs are for
    rows += bench_forward(cfg, latency, device, dtype, warmup, reps, {}, latency_mode, baselines)
    rows += parity_only(cfg, parity_batch, device, torch.float32, baselines)
    return rows + data_stall(stall_preset, device, dtype, steps, data_root)


# ---------------------------------------------------------------------------------------------- report


class _OpLog(TorchDispatchMode):
    """Records the name of every aten op that actually runs (below autograd, after decompositions)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def sdpa_backend(device: torch.device, dtype: torch.dtype, seq: int, heads: int = 12, dim: int = 64) -> str:
    """Which SDPA kernel torch actually picks for (batch, heads, seq, dim) queries of this device and dtype."""
    q = torch.randn(4, heads, seq, dim, device=device, dtype=dtype)
    with _OpLog() as log:
        F.scaled_dot_product_attention(q, q, q)
    names = [n.removeprefix("aten._scaled_dot_product_") for n in log.ops if "scaled_dot_product" in n]
    return ", ".join(names) or "math (composite)"


def machine(device: torch.device, dtype: torch.dtype) -> str:
    """One line naming everything a number depends on."""
    from timesformer_lite.data.loader import usable_cores

    parts = [f"CPU {cpu_model()} ({usable_cores()} threads visible, torch uses {torch.get_num_threads()})"]
    if device.type == "cuda":
        cuda = f"GPU {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
        parts.append(f"{cuda}, cuDNN {torch.backends.cudnn.version()}")
    parts.append(f"torch {torch.__version__}")
    try:
        import transformers

        parts.append(f"transformers {transformers.__version__}")
    except ImportError:
        pass
    parts.append(f"dtype {dtype_name(dtype)}")
    parts.append(f"SDPA spatial {sdpa_backend(device, dtype, 197)}, temporal {sdpa_backend(device, dtype, 8)}")
    if hasattr(os, "getloadavg"):
        parts.append("load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return "; ".join(parts)


def report(
    rows: list[Row], command: str, device: torch.device, dtype: torch.dtype, append: bool, note: str = ""
) -> str:
    """Print the table; append it, dated, with the machine line and `note`, to RESULTS.md. Returns that line."""
    header = ["| measurement | this | against | ratio | target | note |", "|---|---|---|---|---|---|"]
    table = header + [r.markdown() for r in rows]
    info = machine(device, dtype)
    print(info)
    print("\n".join(table))
    if not append:
        return info
    block = [f"### {datetime.date.today().isoformat()}: `{command}`", "", info + (f". {note}" if note else ""), ""]
    intro = "Speeds are clips/s, median (p10-p90); ratio is this / against (higher is faster) unless noted."
    append_results(SECTION, block + table, intro=intro)
    return info


# ---------------------------------------------------------------------------------------------- the record


def suite_record(rows: list[Row], command: str, machine_line: str, note: str = "") -> dict:
    """What `--record` keeps of a CPU suite run (benchmarks/speed_cpu.json): every row, as printed."""
    date = datetime.date.today().isoformat()
    return {"command": command, "date": date, "machine": machine_line, "note": note,
            "rows": [dataclasses.asdict(r) for r in rows]}  # fmt: skip


def readme_row(name: str) -> tuple[str, int]:
    """A row's name without its batch and the batch: "forward 8x224 ... fp32 batch 4: a / b" -> ("forward 8x224 ...
    fp32: a / b", 4). Every row of the README table has one."""
    m = re.fullmatch(r"(.*?) batch (\d+)(.*)", name)
    return m[1] + m[3], int(m[2])


def readme_cell(row: Row | None) -> str:
    """A row's ratio and verdict, "2.35 (>= 1.25: yes)" ("" where the batch has no such row)."""
    if row is None:
        return ""
    return f"{row.ratio:.3g}" + (f" ({row.met})" if row.met else "")


def readme_lines(record: dict) -> list[str]:
    """The README's table of the recorded CPU suite (its "speed_cpu" block), every number read from `record`:
    the rows with a target and Hugging Face's own GFLOP/s against the plain GEMM (what the bf16 target is
    measured against), a column per batch size."""
    rows = [Row(**r) for r in record["rows"]]
    rows = [r for r in rows if r.target is not None or ": HF / plain" in r.name]
    cells: dict[str, dict[int, Row]] = {}
    for r in rows:
        label, batch = readme_row(r.name)
        cells.setdefault(label, {})[batch] = r
    batches = sorted({b for by_batch in cells.values() for b in by_batch})
    lines = [
        f"The recorded CPU suite ({record['date']}; {record['machine']}; `{record['command']}`): each figure is "
        "a ratio of medians over interleaved rounds, ours over the other, its target after it; "
        "benchmarks/RESULTS.md has every row with its spread.",
        "",
        "| row | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "| --- |" + " ---: |" * len(batches),
    ]
    for label, by_batch in cells.items():
        shown = [readme_cell(by_batch.get(b)) for b in batches]
        lines.append(f"| {label} | " + " | ".join(shown) + " |")
    targeted = [r for r in rows if r.passed is not None]
    missed = [f"{r.name} {r.ratio:.3g} ({r.bound})" for r in targeted if not r.passed]
    summary = f"Targets met: {len(targeted) - len(missed)} of {len(targeted)}"
    return [*lines, "", summary + ("; missed: " + "; ".join(missed) if missed else "") + "."]


def record(
    rows: list[Row], command: str, machine_line: str, note: str, path: Path | None = None, readme: Path | None = None
) -> None:
    """Make this CPU suite run the recorded one: RECORDED (benchmarks/speed_cpu.json) and the README's table."""
    rec = suite_record(rows, command, machine_line, note)
    (path or RECORDED).write_text(json.dumps(rec, indent=1) + "\n")
    write_block("speed_cpu", readme_lines(rec), path=readme or README)


# ---------------------------------------------------------------------------------------------- CLI


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python benchmarks/bench_model.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("what", nargs="?", default="suite", choices=["suite", "forward", "train", "mfu", "saved", "stall"])
    p.add_argument("--suite", choices=["cpu", "gpu"], help="every row of issue 13 for that device")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (--suite gpu implies cuda)")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    p.add_argument("--preset", default="base", help="'base' (TimeSformer-B 8x224) or a preset name such as toy")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads, the same for all (0: torch default)")
    p.add_argument("--warmup", type=int, help="untimed rounds first (default 1; --suite gpu: 10)")
    p.add_argument("--reps", type=int, help="timed rounds, the median is reported (default 5; --suite gpu: 30)")
    p.add_argument("--steps", type=int, default=20, help="training steps timed by the data-stall row")
    p.add_argument("--peak-n", type=int, default=8192, help="matmul side for the measured peak")
    p.add_argument("--data-root", help="toy dataset folder for the data-stall row (default: a temporary one)")
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        metavar="MODE",
        help="add the reference under torch.compile(mode=MODE) to the contenders: default (when MODE is\n"
        "left out), reduce-overhead (CUDA graphs) or max-autotune; --suite cpu compiles in default\n"
        "unless given `--compile none`",
    )
    p.add_argument(
        "--baseline",
        default=",".join(BASELINES),
        metavar="COMMIT[,COMMIT]",
        help=f"time these commits' inference models too (default {','.join(BASELINES)}: issue 22's 'today's\n"
        "main' and issue 13's hand-tuned model; their training models in the training rows); none: skip",
    )
    p.add_argument("--note", default="", help="a sentence for RESULTS.md, e.g. what else ran on the machine")
    p.add_argument("--no-append", action="store_true", help="print only; do not touch benchmarks/RESULTS.md")
    p.add_argument(
        "--record",
        action="store_true",
        help="with --suite cpu: also make this run the recorded suite (benchmarks/speed_cpu.json, the README table)",
    )
    args = p.parse_args(argv)
    if args.record and (args.suite != "cpu" or args.no_append):
        p.error("--record keeps a whole CPU suite run beside its RESULTS.md section: use it with --suite cpu alone")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen rows, print them, append them to RESULTS.md."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run_rows(args, argv)
    finally:
        torch.set_num_threads(threads)  # called in-process (tests): leave the caller's setting


def run_rows(args: argparse.Namespace, argv: list[str]) -> int:
    """The rows `args` asks for, printed and (unless --no-append) appended to RESULTS.md."""
    device = torch.device("cuda" if args.suite == "gpu" else args.device)
    dtype = DTYPES["bf16" if args.suite == "gpu" else args.dtype]
    gpu = args.suite == "gpu"  # GPU rounds take milliseconds: the protocol's 10 warm-up and 30 timed ones
    w = args.warmup if args.warmup is not None else (10 if gpu else 1)
    r = args.reps if args.reps is not None else (30 if gpu else 5)
    mode = None if args.compile == "none" else args.compile
    baselines = baseline_of(None if args.baseline == "none" else args.baseline)
    cfg = model_config_for(args.preset)
    if args.suite == "cpu":
        rows = cpu_suite(w, r, "default" if args.compile is None else mode, baselines, device)
    elif args.suite == "gpu":
        rows = gpu_suite(cfg, device, dtype, w, r, args.peak_n, mode, baselines, args.steps, args.data_root)
    elif args.what == "forward":
        rows = bench_forward(cfg, args.batch, device, dtype, w, r, {}, mode, baselines, gemm=device.type == "cpu")
    elif args.what == "train":
        rows = bench_train(cfg, args.batch, device, dtype, w, r, None, mode, baselines)
    elif args.what == "mfu":
        rows = mfu_rows(cfg, args.batch, device, dtype, w, r, args.peak_n, mode)
    elif args.what == "saved":
        rows = bench_saved(cfg, dtype, device)
    elif args.what == "stall":
        rows = data_stall("toy" if args.preset == "base" else args.preset, device, dtype, args.steps, args.data_root)
    else:
        raise ValueError("choose a row (forward, train, mfu, saved, stall) or --suite cpu|gpu")
    command = "python benchmarks/bench_model.py " + " ".join(argv)
    info = report(rows, command, device, dtype, append=not args.no_append, note=args.note)
    if args.record:
        record(rows, command, info, args.note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
