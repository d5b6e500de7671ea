"""Reading weight files without running code from them: safetensors, and torch pickles with `weights_only`.

Every reader in this package goes through these functions (or the restricted unpickler in `paddle.py`), so a
checkpoint from the internet can never execute anything on load, and a small file can never make the loader
allocate much more than its own size: zip members (torch files, `.npz`) are checked against the file's size
before anything is decompressed, and `.npz` array headers against their members' real sizes. A refused file
is named with the reason: the global its pickle names (`pickle_globals` reads them without running anything),
or the format it really is when its name says another (`sniff`).

Writing goes through `atomic_write` / `atomic_write_all`: temporary files beside the targets, renamed over them
only once every one is written, so a failure (a full disk) leaves the old files and no partial one.
"""

from __future__ import annotations

import errno
import os
import pickle
import pickletools
import re
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
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


# the first bytes of a legacy (pre-zip) torch file: its magic number, pickled with protocol 2
_TORCH_LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[:-1]
# what `sniff` finds: (how a message names it, the suffix it should have)
KINDS = {"torch": ("a torch file", ".pt"), "safetensors": ("a .safetensors file", ".safetensors"),
         "npz": ("a .npz of arrays", ".npz")}  # fmt: skip
ZIP_MAGIC = b"PK\x03\x04"  # a zip file's first bytes (torch files and .npz are zips)


def sniff(path: str | Path) -> str | None:
    """What a weight file is by its content, whatever its name: "torch" (a zip holding `data.pkl`, or the legacy
    format's magic number), "safetensors", "npz" (a zip of `.npy` arrays), or None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if head.startswith(ZIP_MAGIC):
                with zipfile.ZipFile(f) as zf:
                    names = zf.namelist()
                if any(n.endswith("data.pkl") for n in names):
                    return "torch"
                return "npz" if names and all(n.endswith(".npy") for n in names) else None
    except (OSError, zipfile.BadZipFile):
        return None
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch"
    size = os.path.getsize(path)
    if len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return "safetensors"
    return None


def check_format(path: str | Path, expected: str | None, name: str) -> None:
    """Refuse a file whose content is one of the formats `sniff` knows other than `expected` (None: none of
    them), naming what it is and the suffix to give it.

    Args:
        path: the file.
        expected: what `sniff` says of a good file of this kind.
        name: the format the suffix promised, for the message ("PaddleVideo's format").
    """
    found = sniff(path)
    if found is not None and found != expected:
        what, suffix = KINDS[found]
        raise WeightsError(f"'{path}' is {what}, not {name}: rename it to {suffix}")


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors of a `.safetensors` file (on the CPU) and its string metadata (empty if none).

    The safetensors reader checks every tensor's shape and offsets against the file before reading it.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:  # safetensors raises its own error types for a damaged header
        check_format(path, "safetensors", "a .safetensors file")
        raise WeightsError(f"'{path}' is not a readable .safetensors file: {first_line(e)}") from e
    return tensors, metadata


# what torch's weights-only unpickler may import besides `torch.*`; any other global a file names is the reason
# it was refused
_TORCH_SAFE_GLOBALS = ("collections.OrderedDict", "collections.Counter", "_codecs.encode", "builtins.set",
                       "builtins.bytearray", "builtins.complex")  # fmt: skip
_STRING_OPS = ("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8")


def pickle_globals(stream: Any) -> list[str]:
    """The globals ("module.name") the pickle at the stream's position names, read with `pickletools`: nothing
    is imported or run. Only used to *say* why a file was refused (the refusing is the unpicklers' job), so a
    crafted pickle that hides a name from this reader is still refused, only with a vaguer reason.

    GLOBAL and INST carry their names; STACK_GLOBAL takes the last two strings pushed, directly or from the memo.
    A damaged pickle gives the names found before the damage.
    """
    names: list[str] = []
    strings: list[str] = []
    memo: dict[int, str | None] = {}
    last: str | None = None  # the string the previous opcode pushed, if it pushed one
    try:
        for op, arg, _ in pickletools.genops(stream):
            pushed = None
            if op.name in ("GLOBAL", "INST"):
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif op.name in _STRING_OPS:
                pushed = arg if isinstance(arg, str) else bytes(arg).decode("latin1")
            elif op.name == "MEMOIZE":
                memo[len(memo)] = last
                pushed = last
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = last
                pushed = last
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(int(arg))
            if pushed is not None and op.name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                strings.append(pushed)
            last = pushed
    except Exception:  # noqa: BLE001 (pickletools raises ValueError, struct.error, UnicodeDecodeError, ... on damage)
        pass
    return names


_RESAVE_TORCH = (
    "if it comes from a source you trust, re-save its state dict there: torch.save(model.state_dict(), path)"
)


def refused(path: str | Path, name: str, fix: str) -> WeightsError:
    """The one line for a file whose pickle names a global no weight file needs."""
    return WeightsError(
        f"refusing to load '{path}': it names the Python global '{name}', and unpickling it could run code; {fix}"
    )


def _torch_file_globals(path: str | Path) -> list[str]:
    """The globals the pickles of a torch file name: `data.pkl` of a zip file, or the leading pickles of the
    legacy format (magic number, protocol, system info, then the object); [] for a file that cannot be read."""
    names: list[str] = []
    try:
        with open(path, "rb") as f:
            if f.read(4) == ZIP_MAGIC:  # not `is_zipfile`: a legacy file's pickled tensors hold whole zips
                with zipfile.ZipFile(f) as zf:
                    member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                    return pickle_globals(zf.open(member)) if member else []
            f.seek(0)
            for _ in range(5):
                start = f.tell()
                names += pickle_globals(f)
                if f.tell() == start:
                    break
    except (OSError, zipfile.BadZipFile):
        pass
    return names


def _unpickler_detail(e: pickle.UnpicklingError) -> str:
    """The line of torch's refusal that names the cause ("Unsupported operand 149"), without its advice."""
    text = str(e).split("WeightsUnpickler error:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0].split(". ")[0] if lines else "UnpicklingError"


def torch_load(path: str | Path) -> Any:
    """`torch.load(weights_only=True)`: tensors, numbers, strings and containers only, never arbitrary objects.

    Raises:
        WeightsError: the file names Python globals beyond those (refused, with the name), is damaged,
            truncated or not a torch file.
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
        foreign = [n for n in _torch_file_globals(path) if not n.startswith("torch.") and n not in _TORCH_SAFE_GLOBALS]
        if foreign:
            raise refused(path, foreign[0], _RESAVE_TORCH) from e
        raise WeightsError(
            f"'{path}' is not a torch file that weights-only loading reads ({_unpickler_detail(e)}); if it is "
            "damaged or cut short, fetch it again, else re-save its state dict: torch.save(model.state_dict(), path)"
        ) from e
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError, ... for damaged or foreign files
        raise WeightsError(
            f"'{path}' is not a readable torch file ({first_line(e)}); is it truncated or in another format?"
        ) from e


def replace_synced(tmp: str | Path, path: str | Path) -> None:
    """Flush `tmp` to disk, then rename it over `path` (atomic within one file system)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def atomic_write_all(writes: dict[Path, Callable[[str], None]]) -> list[Path]:
    """Call every `write(tmp)` on a temporary file next to its path, and only when all succeeded rename them
    into place, in order: a failure (a full disk) leaves every old file as it was and no temporary file behind.

    Temporary files are `.<name>.<random>.tmp` in the file's folder (a kill leaves them, and the trainer removes
    such leftovers from its run folder when it starts). Each rename is atomic; the set of them is not. An
    `OSError` of a write that does not name its file names the path it was writing.

    Returns:
        The paths written.
    """
    tmps: dict[Path, str] = {}
    try:
        for path, write in writes.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmps[path] = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            try:
                write(tmps[path])
            except OSError as e:
                if e.filename is not None or e.errno is None:
                    raise
                raise OSError(e.errno, e.strerror, str(path)) from e  # a write that failed says which file
        for path, tmp in tmps.items():
            replace_synced(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)
    return list(writes)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call `write(tmp)` on a temporary file next to `path`, flush it to disk, then rename it over `path`.

    A reader, or a crash at any moment, sees the old file or the new one, never half of one; a failed `write`
    leaves the old file and removes the temporary one (see `atomic_write_all`).

    Returns:
        The path written.
    """
    return atomic_write_all({Path(path): write})[0]


def safetensors_writer(
    path: str | Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
) -> Callable[[str], None]:
    """A `write(tmp)` for `atomic_write` that saves `tensors` with safetensors; a failed write (a full disk) is
    an `OSError` naming `path` instead of safetensors' own error type."""

    def write(tmp: str) -> None:
        try:
            save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as e:
            code = re.search(r"os error (\d+)", str(e))  # safetensors reports I/O errors only as text
            number = int(code[1]) if code else errno.EIO
            raise OSError(number, os.strerror(number), str(path)) from e

    return write
