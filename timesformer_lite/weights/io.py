"""Reading weight files without running code from them: safetensors, and torch pickles with `weights_only`.

Every reader in this package goes through these two functions (or the restricted unpickler in
`paddle.py`), so a checkpoint from the internet can never execute anything on load.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor


class WeightsError(ValueError):
    """A weight file cannot be read or does not fit the model; the message names the file or keys and the fix."""


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors of a `.safetensors` file (on the CPU) and its string metadata (empty if none)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise WeightsError(f"'{path}' is not a readable .safetensors file: {e}") from e
    return tensors, metadata


def torch_load(path: str | Path) -> Any:
    """`torch.load(weights_only=True)`: tensors, numbers, strings and containers only, never arbitrary objects."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"refusing to load '{path}': it holds Python objects beyond tensors and containers, which "
            f"could run code ({first}); re-save its state dict with torch.save(model.state_dict(), ...)"
        ) from e


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp)` on a temporary file next to `path`, then rename it over `path` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
