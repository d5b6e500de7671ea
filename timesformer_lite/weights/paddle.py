"""PaddleVideo / PaddleClas `.pdparams`, read without paddle and without running code from the file.

`paddle.save(layer.state_dict(), path)` turns every tensor into a numpy array, adds a bookkeeping entry
`"StructuredToParameterName@@"` (structured name -> paddle's internal parameter name), and pickles the
plain dict with protocol 4 (older `save_dygraph` files: protocol 2, where bytes are pickled through
`_codecs.encode(..., "latin1")`). A numpy array unpickles through `numpy._core.multiarray._reconstruct`
(`numpy.core...` when written under numpy 1.x), `numpy.ndarray` and `numpy.dtype`; the restricted
unpickler here resolves those and nothing else, so a file that names any other global is refused before
anything runs.

The names are the official TimeSformer ones under `backbone.` (PaddleVideo's `VisionTransformer`) with
the classifier at `head.fc.`; PaddleClas ImageNet ViTs have no prefix and `head.`. That layout, not the
presence of a time axis, tells the two apart: a PaddleVideo `space_only` model has no time embedding and
no temporal blocks, yet it is a trained video model whose head must be kept.

A pickle can make a few bytes expand: the same array referenced under many keys, or protocol 2's text
re-encoded many times. The reader counts the bytes every array and every encoded string takes and refuses
the file once they exceed the file's own size, before they are allocated. Paddle stores a
`Linear` weight as (in, out), the transpose of torch's; the only 2-D weights in these models are Linear
ones (convolutions are 4-D with torch's layout, LayerNorms 1-D), so every 2-D `*.weight` is transposed.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from .checkpoint import Checkpoint
from .infer import inferred_config
from .io import WeightsError, check_format, first_line, refused

try:  # numpy >= 2 moved the internals; files written under either version name their own module
    from numpy._core import multiarray, numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray, numeric

BOOKKEEPING = ("StructuredToParameterName@@",)


def _latin1(text: str, encoding: str) -> bytes:
    """`_codecs.encode` as protocol 2 uses it for bytes; any other codec is refused."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} (only 'latin1' is expected)")
    return text.encode("latin1")


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): multiarray._reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): multiarray.scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): numeric._frombuffer for core in ("core", "_core")},
}  # Python numbers, strings and containers are pickle opcodes, not globals: no builtins are needed


class _TooLarge(Exception):
    """The pickle asks for more bytes than the file holds."""


class _Refused(pickle.UnpicklingError):
    """The pickle names a global that arrays never need; `args[0]` is its "module.name"."""


class _ArraysOnly(pickle.Unpickler):
    """Resolves only the globals that numpy arrays and plain containers need, within a byte budget.

    Args:
        file: the open `.pdparams`.
        budget: bytes the arrays and encoded strings may take in all (the file's size).
    """

    def __init__(self, file: Any, budget: int) -> None:
        super().__init__(file)
        self.budget = budget
        unpickler = self

        encoded: dict[int, bytes] = {}  # bytes made by `latin1`, by id, not yet copied into an array

        class Array(np.ndarray):  # what the pickle's `numpy.ndarray` resolves to: its data is counted first
            def __setstate__(self, state: Any) -> None:
                if isinstance(state, tuple) and len(state) == 5:
                    nbytes = int(np.prod(state[1], dtype=np.int64)) * np.dtype(state[2]).itemsize
                    # protocol 2's data was counted when it was encoded; its first copy is the array itself
                    if encoded.pop(id(state[4]), None) is None:
                        unpickler.spend(nbytes)
                super().__setstate__(state)

        def latin1(text: str, encoding: str) -> bytes:
            unpickler.spend(len(text))
            data = _latin1(text, encoding)
            encoded[id(data)] = data
            return data

        self.globals = {**_SAFE_GLOBALS, ("numpy", "ndarray"): Array, ("_codecs", "encode"): latin1}

    def spend(self, nbytes: int) -> None:
        self.budget -= max(nbytes, 0)
        if self.budget < 0:
            raise _TooLarge

    def find_class(self, module: str, name: str) -> Any:
        found = self.globals.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found


def read_pdparams(path: str | Path) -> dict[str, Any]:
    """The dict a `.pdparams` holds (numpy arrays and bookkeeping entries), unpickled with `_ArraysOnly`.

    Raises:
        WeightsError: the file is another format (a torch file named `.pdparams`), names a global that arrays
            never need (refused before anything runs), would take more memory than its size, or is damaged.
    """
    check_format(path, None, "PaddleVideo's format")
    size = Path(path).stat().st_size
    too_large = WeightsError(
        f"refusing to load '{path}': its arrays would take more than its {size:,} bytes "
        "(a damaged or malicious file: a real .pdparams stores every array once)"
    )
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f, size).load()
    except _TooLarge:
        raise too_large from None
    except _Refused as e:
        fix = "a .pdparams of arrays never needs it (re-save it with paddle.save(layer.state_dict(), path))"
        raise refused(path, e.args[0], fix) from e
    except Exception as e:  # a damaged pickle raises almost any type from inside the unpickler
        raise WeightsError(
            f"'{path}' is not a readable .pdparams ({first_line(e)}); is it damaged or truncated?"
        ) from e
    if not isinstance(obj, dict):
        raise WeightsError(f"'{path}' holds {type(obj).__name__!r}, not a dict of arrays; is it a .pdparams?")
    # one array under many keys costs nothing here but a copy per key later
    if sum(v.nbytes for v in obj.values() if isinstance(v, np.ndarray)) > size:
        raise too_large
    return {k: np.asarray(v) if isinstance(v, np.ndarray) else v for k, v in obj.items()}


def checkpoint_from_paddle(obj: dict[str, Any], what: str) -> Checkpoint:
    """A `Checkpoint` from a PaddleVideo TimeSformer (or a PaddleClas ViT, to inflate) state dict.

    The architecture is inferred from shapes with PaddleVideo's TimeSformer settings for the rest
    (LayerNorm eps 1e-6, heads of width 64). PaddleVideo's layout (`backbone.*`, `head.fc.*`) is a video
    model, with or without a time axis (`space_only` has none); PaddleClas's (no prefix) is an ImageNet ViT.
    """
    state, unknown = {}, []
    for key, value in obj.items():
        if key in BOOKKEEPING:
            continue
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            unknown.append(f"{key} ({type(value).__name__})")
            continue
        if key.endswith(".weight") and value.ndim == 2:
            value = value.T  # paddle Linear: (in, out)
        name = key.removeprefix("backbone.")
        name = "head." + name[len("head.fc.") :] if name.startswith("head.fc.") else name
        state[name] = torch.from_numpy(np.ascontiguousarray(value))
    if unknown:
        raise WeightsError(f"{what}: entries that are not numeric arrays: {', '.join(unknown[:5])}")
    video = any(k.startswith(("backbone.", "head.fc.")) for k in obj) or "time_embed" in state
    video = video or any("_attn." in k for k in state)
    model, guessed = inferred_config(state, what, image=not video, layer_norm_eps=1e-6)
    return Checkpoint(state, Config(model=model), None, "paddle", image=not video, guessed=guessed)
