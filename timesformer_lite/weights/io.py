"""Reading weight files without running code from them: safetensors, and torch pickles with `weights_only`.

Every reader in this package goes through these functions (or the restricted unpickler in `paddle.py`), so a
checkpoint from the internet can never execute anything on load, and a small file can never make the loader
allocate much more than its own size: zip members (torch files, `.npz`) are checked against the file's size
before anything is decompressed, and `.npz` array headers against their members' real sizes.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

# weights are floats, which never compress to less than half their size: a zip that claims to hold more than
# this many times its own bytes is a decompression bomb, not a checkpoint
MAX_EXPANSION = 2


class WeightsError(ValueError):
    """A weight file cannot be read or does not fit the model; the message names the file or keys and the fix."""


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def check_zip_size(path: str | Path, zf: zipfile.ZipFile) -> None:
    """Refuse a zip whose members would decompress to more than `MAX_EXPANSION` times the file's size."""
    size = os.path.getsize(path)
    total = sum(info.file_size for info in zf.infolist())
    if total > MAX_EXPANSION * max(size, 1):
        raise WeightsError(
            f"refusing to load '{path}': its {size:,} bytes would decompress to {total:,}, more than "
            f"{MAX_EXPANSION}x; weight files do not compress like that (a damaged or malicious file)"
        )


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors of a `.safetensors` file (on the CPU) and its string metadata (empty if none).

    The safetensors reader checks every tensor's shape and offsets against the file before reading it.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:  # safetensors raises its own error types for a damaged header
        raise WeightsError(f"'{path}' is not a readable .safetensors file: {first_line(e)}") from e
    return tensors, metadata


def torch_load(path: str | Path) -> Any:
    """`torch.load(weights_only=True)`: tensors, numbers, strings and containers only, never arbitrary objects.

    Raises:
        WeightsError: the file holds Python objects beyond those, is damaged, truncated or not a torch file.
    """
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                check_zip_size(path, zf)
        except zipfile.BadZipFile as e:
            raise WeightsError(f"'{path}' is a damaged torch file ({first_line(e)}); is it truncated?") from e
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch wraps every refusal in paragraphs of advice; the line naming the cause is the one to show
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        cause = next((line for line in lines if "GLOBAL" in line), None)
        if cause is None:
            detail = next((line for line in lines if "WeightsUnpickler error" in line), lines[-1] if lines else "")
            raise WeightsError(f"'{path}' is not a readable torch file ({detail}); is it truncated?") from e
        raise WeightsError(
            f"refusing to load '{path}': it holds Python objects beyond tensors and containers, which "
            f"could run code ({cause}); re-save its state dict with torch.save(model.state_dict(), ...)"
        ) from e
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... for damaged or foreign files
        raise WeightsError(
            f"'{path}' is not a readable torch file ({first_line(e)}); is it truncated or in another format?"
        ) from e


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp)` on a temporary file next to `path`, flush it to disk, then rename it over `path`.

    A reader, or a crash at any moment, sees the old file or the new one, never half of one. The temporary
    file is `.<name>.<random>.tmp` in the same folder; it is removed when `write` fails (a kill leaves it,
    and the trainer removes such leftovers from its run folder when it starts).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
