"""Is a downloaded body the file it must be? Its format's magic and a structure that parses, nothing executed.

A download with no published digest is checked here before its `.part` is renamed, so that an HTML login page,
an error page saved as `.pyth`, or a body cut short is refused instead of becoming the checkpoint. The checks read
the file's structure and never run code from it:

| file (by name)                      | what must hold                                                            |
| ----------------------------------- | ------------------------------------------------------------------------- |
| `.pyth` `.pth` `.pt` `.bin` `.ckpt` | `io.sniff` says torch; a zip (torch >= 1.6) whose members all pass their CRC, or the legacy format, which must load with `torch.load(weights_only=True)` |
| `.npz`                              | `io.sniff` says npz (a zip of `.npy` members), all of which pass their CRC |
| `.safetensors`                      | an 8-byte header length, a JSON header, and tensors that end at the file's end |
| `.pdparams`                         | one pickle (protocol 2 to 5) whose opcodes parse up to a STOP at the file's end |

Any other name is accepted unless it is an HTML page.
"""

from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from pathlib import Path

from .io import ZIP_MAGIC, WeightsError, check_zip_size, first_line, sniff, torch_load

TORCH_SUFFIXES = (".pyth", ".pth", ".pt", ".bin", ".ckpt")


class NotThatFile(Exception):
    """The bytes are not a complete file of the kind the name says; the message says what they are instead."""


def _zip_intact(path: Path) -> None:
    """Every member of the zip at `path` passes its CRC (a damaged or cut body fails), within the size limit."""
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip_size(path, zf)
            bad = zf.testzip()
    except WeightsError as e:
        raise NotThatFile(str(e)) from e
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise NotThatFile(f"a damaged zip archive ({first_line(e)})") from e
    if bad is not None:
        raise NotThatFile(f"a damaged zip archive (member '{bad}' fails its CRC check)")


def _torch(path: Path) -> None:
    if sniff(path) != "torch":
        raise NotThatFile("not a torch file (neither a zip holding data.pkl nor torch's legacy format): cut short?")
    with open(path, "rb") as f:
        zipped = f.read(4) == ZIP_MAGIC  # as `sniff`: a legacy file's pickled tensors can hold whole zips
    if zipped:
        _zip_intact(path)
        return
    try:  # the legacy format has no central directory to read: loading its tensors is the structure check
        torch_load(path)
    except WeightsError as e:
        raise NotThatFile(
            "a torch file in the legacy format that torch.load(weights_only=True) cannot read: cut short, "
            "damaged, or holding more than tensors"
        ) from e


def _npz(path: Path) -> None:
    if sniff(path) != "npz":
        raise NotThatFile("not an .npz (a zip of .npy arrays): cut short or another kind of file")
    _zip_intact(path)


def _safetensors(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
        if not 2 <= n <= size - 8:
            raise NotThatFile(f"not a safetensors file (header length {n} in a file of {size} bytes)")
        try:
            header = json.loads(f.read(n))
            ends = [int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            raise NotThatFile(f"not a safetensors file (its header does not parse: {first_line(e)})") from e
    if 8 + n + max(ends, default=0) != size:
        raise NotThatFile(f"a safetensors file whose tensors do not end at its last byte ({size} bytes): cut short")


def _pickle(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(2)
        if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
            raise NotThatFile("not a pickle (a .pdparams is one, protocol 2 to 5)")
        f.seek(0)
        try:
            stop = max(pos for op, _, pos in pickletools.genops(f) if op.name == "STOP")
        except (ValueError, EOFError) as e:  # genops names the opcode it could not read
            raise NotThatFile(f"a pickle that ends early or is damaged ({first_line(e)})") from e
    if stop + 1 != size:
        raise NotThatFile(f"a pickle of {stop + 1} bytes followed by {size - stop - 1} more: not one .pdparams")


def _looks_like_text(head: bytes, strict: bool) -> str | None:
    """What a body that is text is likely to be; `strict` asks for an unmistakable HTML start."""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")) or (not strict and text.startswith(b"<")):
        return "an HTML page (a login, error or consent page?)"
    if not strict and text.startswith((b"{", b"[")):
        return "a JSON document (an error message from the server?)"
    return None


_CHECKS = {
    **dict.fromkeys(TORCH_SUFFIXES, _torch),
    ".npz": _npz,
    ".safetensors": _safetensors,
    ".pdparams": _pickle,
}


def check_complete(path: str | Path, name: str) -> None:
    """Raise `NotThatFile` unless `path` is a complete file of the format `name`'s suffix says.

    Args:
        path: the bytes to check (a `.part` file, or a cached download).
        name: the file's real name; its suffix picks the check (see the module docstring).
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise NotThatFile("an empty file")
    check = _CHECKS.get(Path(name).suffix.lower())
    if check is None:
        text = _looks_like_text(head, strict=True)
        if text is not None:
            raise NotThatFile(text)
        return
    try:
        check(path)
    except NotThatFile as e:  # say what the bytes are when that is plain (a page, not a damaged file)
        text = _looks_like_text(head, strict=False)
        raise NotThatFile(text or str(e)) from None
