"""Export a TimeSformer to ONNX or TorchScript, and prove the export computes what PyTorch computes.

    timesformer-lite export --format onnx --checkpoint k400.safetensors --out k400.onnx [--frames 8] [--size 224]

    report = export_model(model, "k400.onnx", "onnx")      # Python; raises ExportParityError on a mismatch
    print(report)

The exported graph is `tl.fuse(model, gemm="torch", split_batches=False)`'s forward (the model's logits,
no maps, with its `*_fc` folds and class-token-only last block, in plain ops a trace follows at any batch
size), checked against the reference `model(video)`: input `video`
(B, T, 3, S, S) float, normalised; output `logits` (B, classes). The batch size B is dynamic; frames T
and size S are fixed at export (position and time embeddings are resized for them once, at load).

- onnx: the `torch.export`-based exporter (`torch.onnx.export(dynamo=True)`), checked with onnxruntime
  on CPU. The older TorchScript-based ONNX exporter is not used: it bakes the batch size into reshapes.
- torchscript: `torch.jit.trace`, checked after `torch.jit.load`. (PyTorch is retiring TorchScript;
  prefer ONNX for new deployments.)

Right after writing, both run on random clips at two batch sizes that differ from the one traced and
are compared with PyTorch; a max abs difference above the tolerance (1e-4 for fp32) is an error.

An export never destroys the last good one: it is written into a new folder beside `--out`
(`.<name>.<random>.export/`), checked there, and renamed to `--out` only when it passes. A failure (the
exporter, a full disk, a read-only folder, the parity check) is one line and leaves `--out` as it was; an
export that fails its parity check is kept in `<out>.failed/` for inspection.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import torch
from torch import Tensor, nn

from .fuse import fuse
from .model import TimeSformer
from .weights.io import first_line, replace_synced

FORMATS = ("onnx", "torchscript")
TRACE_BATCH = 2  # torch.export specialises sizes 0 and 1, so the example batch is 2
CHECK_BATCHES = (1, 3)  # differ from the traced batch: a correct result proves the batch is dynamic
ONNX_SINGLE_FILE_LIMIT = 1_800_000_000  # bytes of weights; protobuf caps a file at 2 GB


class ExportError(ValueError):
    """The exporter failed, or its file does not load back; the message names the file and what to try."""


class ExportParityError(ExportError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


@dataclass
class ExportReport:
    """What `export_model` wrote and how closely it matches PyTorch."""

    path: Path
    fmt: str
    input_shape: tuple[int, int, int, int]  # (T, C, S, S); the batch axis is dynamic
    max_abs_diff: dict[int, float]  # batch size -> max |exported - PyTorch| over the logits
    tolerance: float
    seconds: float  # export time, without the check

    @property
    def ok(self) -> bool:
        return max(self.max_abs_diff.values()) <= self.tolerance

    def __str__(self) -> str:
        diffs = ", ".join(f"batch {b} {d:.2e}" for b, d in self.max_abs_diff.items())
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"exported {self.fmt} to {self.path} in {self.seconds:.1f} s, input (B, {', '.join(map(str, self.input_shape))})"
            f" with B dynamic\nparity with PyTorch, max abs diff: {diffs} (tolerance {self.tolerance:.0e}): {verdict}"
        )


def _export_onnx(model: nn.Module, example: Tensor, path: Path) -> None:
    import onnxscript  # noqa: F401  (the dynamo exporter needs it; fail here with a clear import error)

    big = sum(p.numel() * p.element_size() for p in model.parameters()) > ONNX_SINGLE_FILE_LIMIT
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["video"],
        output_names=["logits"],
        dynamic_shapes={"video": {0: torch.export.Dim("batch")}},
        dynamo=True,
        external_data=big,  # weights beside the graph in PATH.data only when one file cannot hold them
        verbose=False,
    )


def _run_onnx(path: Path, device: torch.device) -> Callable[[Tensor], Tensor]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda video: torch.from_numpy(session.run(None, {"video": video.cpu().numpy()})[0])


def _export_torchscript(model: nn.Module, example: Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        # the model's Python-level checks (channels, grid size) become constants: right for a fixed T and S
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=Warning)
        traced = torch.jit.trace(model, (example,), check_trace=False)
    # saved to memory, then written by Python: torch's own file writer aborts the whole process (a C++
    # c10::Error) when a write fails, e.g. on a full disk; a Python write raises an OSError instead
    buffer = BytesIO()
    torch.jit.save(traced, buffer)
    path.write_bytes(buffer.getbuffer())


def _run_torchscript(path: Path, device: torch.device) -> Callable[[Tensor], Tensor]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=Warning)
        loaded = torch.jit.load(str(path), map_location=device)
    return lambda video: loaded(video.to(device)).cpu()


EXPORTERS = {"onnx": (_export_onnx, _run_onnx), "torchscript": (_export_torchscript, _run_torchscript)}


def _write(graph: nn.Module, example: Tensor, staged: Path, fmt: str, path: Path) -> float:
    """Export `graph` to `staged`; the seconds it took. Every failure but a file system's is an `ExportError`."""
    start = time.perf_counter()
    try:
        with torch.no_grad():
            EXPORTERS[fmt][0](graph, example, staged)
    except OSError:
        raise
    except ImportError as e:
        raise ExportError(f"exporting '{path}' to {fmt} needs the package {e.name!r}: pip install {e.name}") from e
    except Exception as e:  # noqa: BLE001 (torch.export, the ONNX translator and torch.jit raise many types)
        other = FORMATS[1 - FORMATS.index(fmt)]
        raise ExportError(
            f"'{path}': the {fmt} exporter failed ({first_line(e)}); try --format {other}, or set "
            "TIMESFORMER_DEBUG=1 for the traceback"
        ) from e
    return time.perf_counter() - start


def _parity(model: nn.Module, staged: Path, fmt: str, clips: dict[int, Tensor], path: Path) -> dict[int, float]:
    """Max |exported - PyTorch| of the logits at each of `CHECK_BATCHES`, running the file at `staged`."""
    device = next(model.parameters()).device
    try:
        run = EXPORTERS[fmt][1](staged, device)
    except Exception as e:  # noqa: BLE001 (onnxruntime and torch.jit raise their own types)
        raise ExportError(f"'{path}': the {fmt} file written does not load back ({first_line(e)})") from e
    diffs = {}
    with torch.no_grad():
        for b in CHECK_BATCHES:
            expected = model(clips[b].to(device)).cpu()
            got = run(clips[b])
            if got.shape != expected.shape:
                raise ExportParityError(
                    f"{path}: batch {b} gave shape {tuple(got.shape)}, PyTorch {tuple(expected.shape)}"
                )
            diffs[b] = float((got.double() - expected.double()).abs().max())
    return diffs


def _publish(staged: Path, path: Path) -> None:
    """Rename the checked export and its companions (ONNX's external data `<name>.data`) into place, the
    export itself last: a reader sees the old file or the new one."""
    for companion in sorted(staged.parent.glob(f"{glob.escape(staged.name)}?*")):
        replace_synced(companion, path.parent / companion.name)
    replace_synced(staged, path)


def _keep_failed(staging: Path, path: Path) -> Path:
    """Move a staging folder whose export failed its check to `<path>.failed/`, for inspection."""
    keep = path.with_name(path.name + ".failed")
    if keep.is_dir():
        shutil.rmtree(keep)
    os.replace(staging, keep)
    return keep


def _staged_export(
    model: nn.Module, graph: nn.Module, path: Path, fmt: str, clips: dict[int, Tensor], tolerance: float
) -> ExportReport:
    """Export `graph` into a new folder beside `path`, check it against `model` there, and only then rename it
    to `path` (see `export_model`)."""
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".export", dir=path.parent))
        staged = staging / path.name
        seconds = _write(graph, clips[TRACE_BATCH].to(next(model.parameters()).device), staged, fmt, path)
        diffs = _parity(model, staged, fmt, clips, path)
        report = ExportReport(path, fmt, tuple(clips[TRACE_BATCH].shape[1:]), diffs, tolerance, seconds)
        if report.ok:  # NaN compares False, so it fails too
            _publish(staged, path)
            return report
        keep = _keep_failed(staging, path)
    except OSError as e:  # the temporary names mean nothing to the user: name the file they asked for
        raise OSError(e.errno, e.strerror, str(path)) from e
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    raise ExportParityError(
        f"{path}: the {fmt} export differs from PyTorch by {max(diffs.values()):.2e} > tolerance {tolerance:.0e}"
        f" ('{path}' is left as it was, the export kept for inspection in '{keep}/'; export in float32, or "
        "raise --tolerance if a lower precision is intended)"
    )


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str = "onnx",
    num_frames: int | None = None,
    img_size: int | None = None,
    tolerance: float = 1e-4,
) -> ExportReport:
    """Export `model` (as `tl.fuse` makes it, batch size dynamic) and check it against PyTorch's `model`.

    The export is written into a new folder beside `path` and checked there; only a file that passes the check
    is renamed to `path`. A failure (the exporter, a full disk, the check) leaves an existing `path` as it was
    and no partial file behind.

    Args:
        model: a `TimeSformer` (float32 for the default tolerance); any other module is exported as it is.
        path: the file to write (.onnx or .pt by convention).
        fmt: "onnx" or "torchscript".
        num_frames, img_size: the fixed input size; the model's config by default.
        tolerance: the largest max abs difference of the logits accepted (1e-4 for fp32).
    Returns:
        An `ExportReport` (print it for a summary).
    Raises:
        ExportParityError: the exported model disagrees with PyTorch; it is kept in `<path>.failed/`.
        ExportError: the exporter failed, or its file does not load back.
        OSError: the file cannot be written (a full disk, a read-only folder), naming `path`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    cfg = model.cfg
    T, S = num_frames or cfg.num_frames, img_size or cfg.img_size
    if cfg.patch_size > S:
        raise ValueError(f"img_size={S} is smaller than one {cfg.patch_size}x{cfg.patch_size} patch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    clips = {b: torch.randn(b, T, cfg.in_chans, S, S, generator=gen) for b in (TRACE_BATCH, *CHECK_BATCHES)}
    was_training = model.training
    model.eval()
    graph = fuse(model, gemm="torch", split_batches=False) if isinstance(model, TimeSformer) else model
    try:
        return _staged_export(model, graph, path, fmt, clips, tolerance)
    finally:
        model.train(was_training)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="timesformer-lite export", description=__doc__.split("\n")[0])
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx (onnxruntime) or torchscript (torch.jit)")
    p.add_argument("--checkpoint", required=True, help="any checkpoint `load_pretrained` reads")
    p.add_argument("--out", required=True, help="the file to write, e.g. model.onnx or model.pt")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: the checkpoint's)")
    p.add_argument("--size", type=int, default=None, help="frame height = width in pixels (default: the checkpoint's)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest max abs logit difference accepted")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """`timesformer-lite export`: load a checkpoint, export it, print the parity check; 1 when it fails."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .weights import load_pretrained

    overrides = {k: v for k, v in (("num_frames", args.frames), ("img_size", args.size)) if v is not None}
    model = load_pretrained(args.checkpoint, **overrides)
    try:
        report = export_model(model, args.out, args.format, args.frames, args.size, args.tolerance)
    except ExportParityError as e:
        print(f"timesformer-lite export: parity check failed: {e}", file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
