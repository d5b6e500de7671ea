"""Training checkpoints: everything needed to resume exactly, written atomically.

A checkpoint is a `torch.save` of plain containers and tensors (loadable with `weights_only=True`):
`{"format": "timesformer_lite", "version": 1, "model", "config", "classes", "optimizer", "scheduler",
"scaler", "epoch", "step_in_epoch", "global_step", "best_top1", "history", "rng"}`. `load_pretrained`
reads the same files for prediction and fine-tuning.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT = "timesformer_lite"


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename: a reader (or a crash) never
    sees half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rng_state() -> dict[str, Any]:
    """The main process's torch RNG (dropout, drop path); data randomness is per clip (see sampler.py)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; a clear error for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist; use train.resume=auto or give a path")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"checkpoint '{path}' cannot be read ({type(e).__name__}: {e}); is it truncated?") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "optimizer" not in ckpt:
        raise ValueError(f"'{path}' is not a timesformer_lite training checkpoint (no optimizer state to resume)")
    return ckpt


def find_resume(resume: str, run_dir: Path) -> Path | None:
    """`train.resume`: "" (start fresh), "auto" (run_dir/last.pt if it exists) or a path."""
    if not resume:
        return None
    if resume == "auto":
        last = run_dir / "last.pt"
        return last if last.is_file() else None
    return Path(resume)
