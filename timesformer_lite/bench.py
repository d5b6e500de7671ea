"""`timesformer-lite bench`: speed against Hugging Face Timesformer, measured side by side in one run.

    timesformer-lite bench --suite cpu                 # CPU rows: forward (base, batch 1 and 4), toy training, parity,
                                                       # tensors kept for backward (GPU code paths, bf16)
    timesformer-lite bench --suite gpu                 # GPU rows: bf16 forward/training, memory, MFU, parity, data stall
    timesformer-lite bench --suite gpu --compile       # ... and each again with ours under torch.compile
    timesformer-lite bench forward --device cuda --dtype bf16 --batch 32 [--compile reduce-overhead]
    timesformer-lite bench decode                      # benchmarks/bench_decode.py (decord vs PyAV), source checkout

The peer is `transformers.TimesformerForVideoClassification` built from the same config with random
weights; ours loads its state dict through `state_dict_from_hf`, so both compute the same function and
their logits are compared too. Protocol (shared/reference/performance.md §7): same process, device,
input, dtype policy, batch and thread count; warm-up, then the contenders interleaved (ours, HF, ours,
...) so drift hits both alike; medians with p10/p90. Results are appended, dated, to
benchmarks/RESULTS.md under "## Model speed vs Hugging Face" unless --no-append.

dtype policy: fp32 everywhere for "fp32"; for "bf16", fp32 weights under bf16 autocast for inference and
training alike (the trainer's `amp=bf16`, and what performance.md G1 prescribes).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

from .config import Config, ModelConfig, load_config
from .model import TimeSformer, attention
from .model.attention import cpu_info
from .utils import model_flops
from .weights.hf import config_to_hf, state_dict_from_hf

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
SECTION = "## Model speed vs Hugging Face"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TARGETS = {  # issue #8: the ratio each row must reach (">=" unless the row says otherwise)
    "forward_cpu": 1.25,
    "train_cpu": 1.25,
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
        """`items` per second at the median, with the p10-p90 range (fast end first)."""
        return f"{items / self.median:.3g} ({items / self.p90:.3g}-{items / self.p10:.3g})"


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so wall-clock time covers the work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    contenders: dict[str, Callable[[], object]], device: torch.device, warmup: int, reps: int
) -> dict[str, Timing]:
    """Time each contender `reps` times, alternating A, B, A, B, ... after `warmup` rounds of each."""
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


def hf_and_ours(cfg: ModelConfig, device: torch.device, seed: int = 0) -> tuple[nn.Module, TimeSformer]:
    """The HF peer with random weights, and ours holding the very same weights (through our converter)."""
    try:
        from transformers import TimesformerConfig, TimesformerForVideoClassification
    except ImportError as e:  # a dev dependency, not a runtime one
        raise ValueError("the benchmark compares against Hugging Face: pip install transformers") from e
    torch.manual_seed(seed)
    hf = TimesformerForVideoClassification(TimesformerConfig(**config_to_hf(cfg)))
    ours = TimeSformer(cfg)
    state, unmapped = state_dict_from_hf(hf.state_dict())
    if unmapped:
        raise RuntimeError(f"HF parameters with no name of ours: {unmapped}")
    ours.load_state_dict(state, strict=True)
    return hf.to(device), ours.to(device)


def compiled(model: nn.Module, mode: str | None) -> Callable[[Tensor], Tensor]:
    """`model` itself, or `torch.compile(model, mode=mode)` ("default", "reduce-overhead" for CUDA graphs,
    "max-autotune"); the first calls compile, which the warm-up rounds absorb."""
    return model if mode is None else torch.compile(model, mode=mode)


def compile_warmup(warmup: int, mode: str | None) -> int:
    """Warm-up rounds for a contender compiled in `mode`: at least 3, since compiling (and recording CUDA
    graphs for "reduce-overhead") takes the first calls."""
    return warmup if mode is None else max(warmup, 3)


def measured(cfg: ModelConfig, dtype: torch.dtype, batch: int, mode: str | None = None) -> str:
    """What a row measured: model, dtype, batch, and how ours ran if compiled."""
    return f"{label(cfg)} {dtype_name(dtype)} batch {batch}" + ("" if mode is None else f", ours torch.compile({mode})")


def hf_logits(hf: nn.Module) -> Callable[[Tensor], Tensor]:
    """HF's forward as a function of the video, returning logits like ours."""
    return lambda video: hf(pixel_values=video).logits


def random_video(cfg: ModelConfig, batch: int, device: torch.device, dtype: torch.dtype, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, cfg.num_frames, cfg.in_chans, cfg.img_size, cfg.img_size, generator=g)
    return video.to(device=device, dtype=dtype)


def autocast(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    """bf16 autocast at bf16; a no-op context at fp32."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


@contextmanager
def strict_fp32() -> Iterator[None]:
    """fp32 that is fp32 on a GPU too: cuDNN convolutions use TF32 by default (the patch embedding), which
    would take the fp32 parity row to ~1e-3 and differ between memory layouts."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---------------------------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One benchmark line: what, both contenders' figures, the ratio ours / HF and the target it must meet."""

    name: str
    ours: str
    hf: str
    ratio: float
    target: float | None = None
    lower_is_better: bool = False
    note: str = ""

    @property
    def met(self) -> str:
        if self.target is None:
            return ""
        ok = self.ratio <= self.target if self.lower_is_better else self.ratio >= self.target
        return f"{'<=' if self.lower_is_better else '>='} {self.target:g}: {'yes' if ok else 'NO'}"

    def markdown(self) -> str:
        return f"| {self.name} | {self.ours} | {self.hf} | **{self.ratio:.3g}** | {self.met} | {self.note} |"


def bench_forward(
    cfg: ModelConfig,
    batch: int,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    reps: int,
    target: float | None,
    compile_mode: str | None = None,
    peak: Peak | None = None,
) -> list[Row]:
    """Inference clips/s (eval, no_grad), ours / HF, and the logit parity of the same call.

    `compile_mode`: run ours through `torch.compile` in that mode (HF stays eager, as its users run it).
    `peak`: also give our MFU against it.
    """
    hf, ours = hf_and_ours(cfg, device)
    hf, ours = hf.eval(), ours.eval()
    ours_fn, warmup = compiled(ours, compile_mode), compile_warmup(warmup, compile_mode)
    video = random_video(cfg, batch, device, torch.float32)
    with torch.no_grad(), autocast(device, dtype), strict_fp32() if dtype == torch.float32 else nullcontext():
        t = interleaved({"ours": lambda: ours_fn(video), "hf": lambda: hf(pixel_values=video)}, device, warmup, reps)
        diff = parity(ours_fn, hf_logits(hf), video)
    speed = t["hf"].median / t["ours"].median
    what = measured(cfg, dtype, batch, compile_mode)
    rows = [Row(f"forward {what} (clips/s)", t["ours"].rate(batch), t["hf"].rate(batch), speed, target)]
    rows.append(diff.row(f"logits vs HF, {what}", dtype))
    if peak is not None:
        rows.append(mfu_row("inference", what, batch, t["ours"].median, model_flops(cfg), peak))
    return rows


@dataclass
class Parity:
    """Largest logit difference and top-1 agreement between two models on one input."""

    max_abs: float
    top1: float

    def row(self, name: str, dtype: torch.dtype) -> Row:
        bound = 1e-4 if dtype == torch.float32 else 2e-2
        ok = self.max_abs <= bound and self.top1 == 1.0
        note = f"bound {bound:g}, top-1 agreement {100 * self.top1:.0f} %: {'yes' if ok else 'NO'}"
        return Row(name, f"max abs diff {self.max_abs:.2e}", "", self.max_abs, note=note)


def parity(ours: Callable[[Tensor], Tensor], hf: Callable[[Tensor], Tensor], video: Tensor) -> Parity:
    a, b = ours(video).float(), hf(video).float()
    return Parity((a - b).abs().max().item(), (a.argmax(1) == b.argmax(1)).float().mean().item())


def train_step(model: Callable[[Tensor], Tensor], opt: torch.optim.Optimizer, video: Tensor, labels: Tensor, amp):
    """One AdamW step: forward under the dtype policy, cross-entropy, backward, update."""
    with amp:
        loss = F.cross_entropy(model(video).float(), labels)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def bench_train(
    cfg: ModelConfig,
    batch: int,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    reps: int,
    target: float | None,
    compile_mode: str | None = None,
    peak: Peak | None = None,
) -> list[Row]:
    """Training-step clips/s (forward, backward, AdamW), ours / HF; on CUDA also peak memory.

    `compile_mode`: run ours through `torch.compile` in that mode (HF stays eager).
    `peak`: also give our MFU against it (a step counted as 3 forward passes, as the paper's arithmetic does).
    """
    hf, ours = hf_and_ours(cfg, device)
    hf.train()
    ours.train()
    video = random_video(cfg, batch, device, torch.float32)
    labels = torch.arange(batch, device=device) % max(cfg.num_classes, 1)
    opts = {"ours": torch.optim.AdamW(ours.parameters(), lr=1e-4), "hf": torch.optim.AdamW(hf.parameters(), lr=1e-4)}
    fns = {"ours": compiled(ours, compile_mode), "hf": hf_logits(hf)}
    warmup = compile_warmup(warmup, compile_mode)
    amp = autocast(device, dtype)
    steps = {k: (lambda k=k: train_step(fns[k], opts[k], video, labels, amp)) for k in fns}
    t = interleaved(steps, device, warmup, reps)
    what = measured(cfg, dtype, batch, compile_mode)
    name = f"training step {what}, AdamW (clips/s)"
    rows = [Row(name, t["ours"].rate(batch), t["hf"].rate(batch), t["hf"].median / t["ours"].median, target)]
    if peak is not None:
        rows.append(mfu_row("training", what, batch, t["ours"].median, 3 * model_flops(cfg), peak))
    if device.type == "cuda":
        # both contenders stay resident: take the other's weights and optimizer state out of each peak
        held = {"ours": state_bytes(hf, opts["hf"]), "hf": state_bytes(ours, opts["ours"])}
        peak = {k: peak_step_memory(step, device) - held[k] for k, step in steps.items()}
        rows.append(
            Row(
                f"peak training memory {what} (GiB)",
                f"{peak['ours'] / 2**30:.2f}",
                f"{peak['hf'] / 2**30:.2f}",
                peak["ours"] / peak["hf"],
                TARGETS["memory"],
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
    """What training keeps for the backward pass, per clip and per step, ours (on its GPU code paths) / HF:
    the peak-memory row's part that a CPU can measure. Per clip is batch 2 minus batch 1; per step the rest
    (e.g. weights cast for autocast, kept once whatever the batch)."""
    hf, ours = hf_and_ours(cfg, device)
    models = {"ours": (ours.train(), ours), "hf": (hf.train(), hf_logits(hf))}
    one, two = (random_video(cfg, b, device, torch.float32) for b in (1, 2))
    with attention.gpu_training_paths():
        kept = {k: (saved_bytes(*m, one, dtype), saved_bytes(*m, two, dtype)) for k, m in models.items()}
    clip = {k: (b - a) / 2**20 for k, (a, b) in kept.items()}
    step = {k: (2 * a - b) / 2**20 for k, (a, b) in kept.items()}
    what = f"{label(cfg)} {dtype_name(dtype)}"
    note = f"plus once a step: ours {step['ours']:.0f}, HF {step['hf']:.0f} MiB; ours on its GPU code paths"
    name = f"tensors kept for backward per clip, training {what} (MiB)"
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
    return Row(f"MFU {what} {name}", f"{achieved / 1e12:.1f} TFLOP/s", "", achieved / peak.flops, target, note=note)


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
    """Model FLOP utilisation of our inference and training against the matmul peak measured first."""
    peak = matmul_peak(device, dtype, peak_n)
    rows = bench_forward(cfg, batch, device, dtype, warmup, reps, None, compile_mode, peak)
    rows += bench_train(cfg, batch, device, dtype, warmup, reps, None, compile_mode, peak)
    return [r for r in rows if r.name.startswith("MFU")]


def data_stall(preset: str, device: torch.device, dtype: torch.dtype, steps: int, root: str | None) -> list[Row]:
    """Fraction of training-step time spent waiting for the loader (a toy preset with its default workers).

    A small toy dataset (enough clips for `steps` batches) is generated into `root`, a temporary folder by
    default. Each step times `next(loader)` apart from the transfer, forward, backward and update;
    stall = waiting / total over the timed steps.
    """
    from .data import build_dataset, build_loader, workers_for

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
        return _stall(cfg, loader, device, dtype, steps, preset)


def _stall(
    cfg: Config, loader: DataLoader, device: torch.device, dtype: torch.dtype, steps: int, preset: str
) -> list[Row]:
    """Train `cfg.model` from `loader` for `steps` timed steps; the stall row."""
    model = TimeSformer(cfg.model).to(device).train()
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
    stall = sum(waits) / sum(totals)
    step_ms = 1e3 * statistics.median(totals)
    workers = f"{loader.num_workers} workers (data.num_workers={cfg.data.num_workers})"
    note = f"{workers}, median step {step_ms:.1f} ms, {steps} steps; target < 10 %"
    name = f"data stall, {preset} preset training {dtype_name(dtype)} batch {cfg.train.batch_size}"
    return [Row(name, f"{100 * stall:.1f} % of step time", "", stall, 0.10, lower_is_better=True, note=note)]


# ---------------------------------------------------------------------------------------------- report


def label(cfg: ModelConfig) -> str:
    return f"{cfg.num_frames}x{cfg.img_size} D{cfg.embed_dim} depth {cfg.depth}"


def dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    return cpu_info("model name") or platform.processor() or platform.machine()


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
    from .data.loader import usable_cores

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


def report(rows: list[Row], command: str, device: torch.device, dtype: torch.dtype, append: bool) -> None:
    """Print the table; append it, dated and with the machine line, to RESULTS.md."""
    header = ["| measurement | ours | HF | ours / HF | target | note |", "|---|---|---|---|---|---|"]
    table = header + [r.markdown() for r in rows]
    info = machine(device, dtype)
    print(info)
    print("\n".join(table))
    if not append:
        return
    block = [f"### {datetime.date.today().isoformat()}: `{command}`", "", info, "", *table]
    append_results(SECTION, block, intro="Ratios are ours / HF (higher is faster) unless noted.")


def append_results(section: str, block: list[str], intro: str = "", path: Path | None = None) -> None:
    """Add `block` (lines) at the end of `section` ("## ...") of RESULTS.md, creating either if missing;
    the other sections stay where they are."""
    path = path or RESULTS
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if section + "\n" not in text:
        text = text.rstrip("\n") + f"\n\n{section}\n" + (f"\n{intro}\n" if intro else "")
    head, _, tail = text.partition(section + "\n")
    nxt = tail.find("\n## ")
    body, rest = (tail[: nxt + 1], tail[nxt + 1 :]) if nxt >= 0 else (tail, "")
    body = body.rstrip("\n") + "\n\n" + "\n".join(block).strip("\n") + "\n"
    path.write_text(head + section + "\n" + body + ("\n" + rest if rest else ""))


# ---------------------------------------------------------------------------------------------- CLI


def run_decode(argv: list[str]) -> int:
    """The colleague's decode benchmark (decord vs PyAV per core), which lives only in a source checkout."""
    script = REPO / "benchmarks" / "bench_decode.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: the decode benchmark runs from a source checkout")
    spec = importlib.util.spec_from_file_location("bench_decode", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(argv) or 0)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="timesformer-lite bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument(
        "what", nargs="?", default="suite", choices=["suite", "forward", "train", "mfu", "saved", "stall", "decode"]
    )
    p.add_argument("--suite", choices=["cpu", "gpu"], help="every row of issue #8 for that device")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (--suite gpu implies cuda)")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    p.add_argument("--preset", default="base", help="'base' (TimeSformer-B 8x224) or a preset name such as toy")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads, the same for both (0: torch default)")
    p.add_argument("--warmup", type=int, help="untimed rounds first (default 2; --suite gpu: 10)")
    p.add_argument("--reps", type=int, help="timed rounds, the median is reported (default 7; --suite gpu: 30)")
    p.add_argument("--steps", type=int, default=20, help="training steps timed by the data-stall row")
    p.add_argument("--peak-n", type=int, default=8192, help="matmul side for the measured peak")
    p.add_argument("--data-root", help="toy dataset folder for the data-stall row (default: the preset's)")
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        metavar="MODE",
        help="also (--suite gpu) or only (one row) run ours through torch.compile in MODE:\n"
        "default (when MODE is left out), reduce-overhead (CUDA graphs) or max-autotune",
    )
    p.add_argument("--no-append", action="store_true", help="print only; do not touch benchmarks/RESULTS.md")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen rows, print them, append them to RESULTS.md."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parse(argv)
    if args.what == "decode":
        return run_decode(rest)
    if rest:
        raise ValueError(f"unknown arguments {rest}; see timesformer-lite bench --help")
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run_rows(args, argv)
    finally:
        torch.set_num_threads(threads)  # called in-process (tests, notebooks): leave the caller's setting


def gpu_suite(
    cfg: ModelConfig,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int,
    reps: int,
    peak_n: int,
    compile_mode: str | None,
    steps: int,
    data_root: str | None,
    batches: tuple[int, int, int, int] = (32, 16, 1, 4),
    stall_preset: str = "toy",
) -> list[Row]:
    """Every GPU row of issue #8: forward (batch 32) and training (batch 16) against HF with MFU and peak
    memory, eagerly and, given `compile_mode`, with ours compiled; batch-1 latency (with CUDA graphs when
    compiling); fp32 parity (batch 4); the data stall of `stall_preset`'s training. `batches` and the
    preset are parameters so that a test can run the whole suite on a CPU with a tiny model."""
    forward, train, latency, parity_batch = batches
    peak = matmul_peak(device, dtype, peak_n)
    rows: list[Row] = []
    for mode in (None, compile_mode) if compile_mode else (None,):
        rows += bench_forward(cfg, forward, device, dtype, warmup, reps, TARGETS["forward_gpu"], mode, peak)
        rows += bench_train(cfg, train, device, dtype, warmup, reps, TARGETS["train_gpu"], mode, peak)
    rows += bench_forward(cfg, latency, device, dtype, warmup, reps, None)  # batch-1 latency (G10)
    if compile_mode:  # the launch-bound case CUDA graphs are for
        rows += bench_forward(cfg, latency, device, dtype, warmup, reps, None, "reduce-overhead")
    rows += bench_forward(cfg, parity_batch, device, torch.float32, warmup, reps, None)[1:2]  # fp32 parity
    return rows + data_stall(stall_preset, device, dtype, steps, data_root)


def run_rows(args: argparse.Namespace, argv: list[str]) -> int:
    """The rows `args` asks for, printed and (unless --no-append) appended to RESULTS.md."""
    device = torch.device("cuda" if args.suite == "gpu" else args.device)
    dtype = DTYPES["bf16" if args.suite == "gpu" else args.dtype]
    gpu = args.suite == "gpu"  # GPU rounds take milliseconds: the protocol's 10 warm-up and 30 timed ones
    w = args.warmup if args.warmup is not None else (10 if gpu else 2)
    r = args.reps if args.reps is not None else (30 if gpu else 7)
    rows: list[Row] = []
    if args.suite == "cpu":
        base, toy = base_config(), load_config("toy")
        for batch in (1, 4):
            rows += bench_forward(base, batch, device, torch.float32, w, r, TARGETS["forward_cpu"])
        rows += bench_train(toy.model, toy.train.batch_size, device, torch.float32, w, 3 * r, TARGETS["train_cpu"])
        rows += bench_forward(base, 1, device, torch.bfloat16, 0, 1, None)[1:]  # the bf16 parity row only
        rows += bench_saved(base, torch.bfloat16, device)  # what the GPU memory row depends on
    elif args.suite == "gpu":
        rows += gpu_suite(base_config(), device, dtype, w, r, args.peak_n, args.compile, args.steps, args.data_root)
    else:
        cfg = model_config_for(args.preset)
        target, mode = None, args.compile
        if args.what == "forward":
            rows += bench_forward(cfg, args.batch, device, dtype, w, r, target, mode)
        elif args.what == "train":
            rows += bench_train(cfg, args.batch, device, dtype, w, r, target, mode)
        elif args.what == "mfu":
            rows += mfu_rows(cfg, args.batch, device, dtype, w, r, args.peak_n, mode)
        elif args.what == "saved":
            rows += bench_saved(cfg, dtype, device)
        elif args.what == "stall":
            rows += data_stall(
                "toy" if args.preset == "base" else args.preset, device, dtype, args.steps, args.data_root
            )
        else:
            raise ValueError("choose a row (forward, train, mfu, saved, stall, decode) or --suite cpu|gpu")
    report(rows, "timesformer-lite bench " + " ".join(argv), device, dtype, append=not args.no_append)
    return 0
