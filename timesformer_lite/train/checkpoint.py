"""Training checkpoints: everything needed to resume exactly, written atomically.

A checkpoint is a `torch.save` of plain containers and tensors (loadable with `weights_only=True`):
`{"format": "timesformer_lite", "version": 1, "model", "config", "classes", "optimizer", "scheduler",
"scaler", "epoch", "step_in_epoch", "global_step", "best_top1", "history", "rng", ...}` (`Trainer.state`),
written with `weights.io.atomic_write` and read back with `weights.checkpoint.read_trainer_checkpoint` (the
readers `load_pretrained` uses too). What else an exact resume needs is in `resume.py`, the folder the
checkpoints live in is `run_folder.py`, and a Ctrl-C during a write is `interrupts.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..weights.checkpoint import FORMAT
from ..weights.io import atomic_write

__all__ = ["FORMAT", "save_checkpoint"]


class _Writes:
    """A file for `torch.save` that keeps the OSError of a failed write: torch reports a full disk only as
    "unexpected pos" in a RuntimeError."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def save_checkpoint(obj: Any, path: str | Path) -> Path:
    """`torch.save` through `atomic_write`: a reader (or a crash) never sees half a checkpoint.

    Raises:
        OSError: the write failed (a full disk: ENOSPC), naming `path`.
    """

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            writes = _Writes(f)
            try:
                torch.save(obj, writes)
            except RuntimeError:
                if writes.error is None:
                    raise
                raise OSError(writes.error.errno, writes.error.strerror, str(path)) from None

    try:
        return atomic_write(path, write)
    except OSError as e:
        if e.filename is None:  # flushing or closing the file failed: name the checkpoint
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
