"""Training checkpoints and the run folder: everything needed to resume exactly, written atomically.

A checkpoint is a `torch.save` of plain containers and tensors (loadable with `weights_only=True`):
`{"format": "timesformer_lite", "version": 1, "model", "config", "classes", "optimizer", "scheduler",
"scaler", "epoch", "step_in_epoch", "global_step", "best_top1", "history", "rng"}`, written with
`weights.io.atomic_write` and read back with `weights.checkpoint.read_trainer_checkpoint` (the readers
`load_pretrained` uses too).

A run folder (`train.out_dir/train.name`) belongs to one training at a time: `RunFolder` holds an
exclusive lock on its `.lock` file for as long as the run lives (the OS drops it when the process dies,
even by kill -9), and removes the temporary files a killed write left behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..weights.checkpoint import FORMAT
from ..weights.io import atomic_write

__all__ = [
    "FORMAT",
    "RunFolder",
    "config_changes",
    "find_resume",
    "interrupts_deferred",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

# keys a resumed run may change: how long it runs, where, how it loads data and reports; none of them
# changes the weights a step computes (exact resume)
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.resume",
    "train.device",
    "train.test",
    "train.test_average",
    "train.eval_every",
    "train.checkpoint_every",
    "train.compile",
    "train.out_dir",
    "data.num_workers",
    "data.cache",
    "data.root",
    "data.num_clips",
    "data.num_crops",
)


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


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block is done, then deliver it.

    For checkpoint writes: interrupted inside `torch.save`, whose C++ writer calls back into the Python file,
    the process aborted ("write to closed file" from the writer's destructor) instead of stopping cleanly.
    A no-op outside the main thread, where Python cannot set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)  # now, to the handler that was there (KeyboardInterrupt)


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


def find_resume(resume: str, run_dir: Path) -> Path | None:
    """`train.resume`: "" (start fresh), "auto" (run_dir/last.pt if it exists) or a path."""
    if not resume:
        return None
    if resume == "auto":
        last = run_dir / "last.pt"
        return last if last.is_file() else None
    return Path(resume)


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The keys (other than `RESUMABLE_CHANGES`) whose values differ, as "key: saved -> current"."""
    a, b = _flat(saved), _flat(current)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k)
    ]


class RunFolder:
    """Exclusive use of a run folder for one training; `close()` (or the process ending) releases it.

    Args:
        path: the run folder; created if needed.

    Raises:
        ValueError: another training holds the folder (the message names its process), or the path cannot
            be a folder (a file is in the way) or cannot be written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._lock = open(path / ".lock", "a+")  # noqa: SIM115 (held open for the run's lifetime)
        except (FileExistsError, NotADirectoryError) as e:
            raise ValueError(
                f"run folder '{path}' cannot be created: '{e.filename}' is a file; set train.out_dir or train.name "
                "to a folder"
            ) from e
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise ValueError(
                f"run folder '{path}' is not writable ({e.strerror}); set train.out_dir to a folder you can write"
            ) from e
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            owner = self._lock.read().strip() or "unknown"
            self._lock.close()
            raise ValueError(
                f"run folder '{path}' is in use by another training (process {owner}); wait for it to finish, "
                "or set train.name (or train.out_dir) to another folder"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"{os.getpid()}\n")
        self._lock.flush()
        self.removed = self._remove_leftovers()

    def _remove_leftovers(self) -> list[Path]:
        """Temporary files of writes that were killed (`atomic_write` names them `.<name>.<random>.tmp`): with
        the lock held, no write of another run can be in progress, so every one of them is a leftover."""
        leftovers = sorted(self.path.glob(".*.tmp"))
        for p in leftovers:
            p.unlink(missing_ok=True)
        return leftovers

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
