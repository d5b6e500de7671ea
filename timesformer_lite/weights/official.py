"""facebookresearch/TimeSformer checkpoints (`.pyth` / `.pth`).

The released files hold the state dict under `model_state` with every key prefixed `model.` (the training
wrapper holds the network as `self.model`); the official loader also accepts `state_dict` (prefixed
`module.` by DDP) and plain dicts. Without the prefixes the names are ours, so nothing is renamed.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..config import Config
from .checkpoint import Checkpoint
from .infer import inferred_config
from .io import WeightsError

_WRAPPERS = ("model_state", "state_dict", "model", "module")
_PREFIXES = ("module.", "model.")


def unwrap_state_dict(obj: Any, what: str) -> dict[str, Tensor]:
    """The state dict inside a `torch.save`d object: under one of `_WRAPPERS` or the object itself, with the
    `module.` / `model.` prefixes removed."""
    if not isinstance(obj, dict):
        raise WeightsError(f"{what} holds a {type(obj).__name__}, not a dict of tensors")
    for key in _WRAPPERS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    not_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise WeightsError(
            f"{what}: entries {', '.join(map(str, not_tensors[:5]))} are not tensors; "
            f"expected a state dict (optionally under one of {', '.join(_WRAPPERS)})"
        )
    state = {}
    for k, v in obj.items():
        while k.startswith(_PREFIXES):
            k = k.split(".", 1)[1]
        state[k] = v
    return state


def checkpoint_from_official(obj: Any, what: str) -> Checkpoint:
    """A `Checkpoint` from an official checkpoint object; the architecture is inferred from shapes, with the
    official defaults for the rest (heads of width 64, LayerNorm eps 1e-6)."""
    state = unwrap_state_dict(obj, what)
    model, guessed = inferred_config(state, what, layer_norm_eps=1e-6)
    return Checkpoint(state, Config(model=model), None, "official", guessed=guessed)
