"""What a state dict in our (= official) names says about the architecture, read from tensor shapes.

Shapes give the widths, the depth, the patch size, the training image size and frame count, the class
count and the attention scheme (from which `*_attn` keys exist). They cannot give the number of heads,
the LayerNorm epsilon or the dropout rates: those come from the format's defaults or the caller.
"""

from __future__ import annotations

import math
import re
from typing import Any

from torch import Tensor

from ..config import ModelConfig, model_config
from .io import WeightsError


def attention_type_of(keys: list[str] | set[str]) -> str:
    """The scheme whose added steps' parameters appear among `keys` (no temporal keys: joint or space_only)."""
    if any(".width_attn." in k for k in keys):
        return "axial"
    if any(".local_attn." in k for k in keys):
        return "sparse_local_global"
    if any(".temporal_attn." in k for k in keys):
        return "divided_space_time"
    return "joint_space_time" if "time_embed" in keys else "space_only"


def infer_model_fields(state: dict[str, Tensor], what: str) -> dict[str, Any]:
    """ModelConfig fields implied by the shapes of a state dict in our names.

    Args:
        state: tensors named like ours (`patch_embed.proj.weight`, `blocks.0.attn.qkv.weight`, ...).
        what: how to name the weights in an error message (e.g. "'k400.pyth' (official)").

    Returns:
        img_size, patch_size, in_chans, embed_dim, depth, mlp_ratio, qkv_bias, num_classes, and num_frames
        when a time embedding is present; `attention_type` is left to the caller (see `attention_type_of`).
    """
    needed = ["patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight"]
    absent = [k for k in needed if k not in state]
    if absent:
        raise WeightsError(
            f"{what} does not look like a TimeSformer or ViT state dict: no {', '.join(absent)}; "
            "pass source=... if the format was detected wrongly"
        )
    D, C, p, _ = state["patch_embed.proj.weight"].shape
    n = state["pos_embed"].shape[-2] - 1
    grid = math.isqrt(n)
    if grid * grid != n:
        raise WeightsError(f"{what}: pos_embed holds {n} patch positions, not a square grid")
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    fields: dict[str, Any] = dict(
        img_size=grid * p,
        patch_size=p,
        in_chans=C,
        embed_dim=D,
        depth=depth,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / D,
        qkv_bias="blocks.0.attn.qkv.bias" in state,
        num_classes=state["head.weight"].shape[0] if "head.weight" in state else 0,
    )
    if "time_embed" in state:
        fields["num_frames"] = state["time_embed"].shape[1]
    return fields


def default_heads(embed_dim: int) -> int:
    """Heads of width 64, the ViT convention (ViT-S/B/L have 6/12/16 heads); pass num_heads to change it."""
    heads = embed_dim // 64
    return heads if heads and embed_dim % heads == 0 else 1


def inferred_config(
    state: dict[str, Tensor], what: str, image: bool = False, **defaults: Any
) -> tuple[ModelConfig, list[str]]:
    """A ModelConfig for a state dict in our names, and the fields that did not come from its shapes.

    Args:
        state: tensors named like ours.
        what: names the weights in error messages.
        image: an image ViT (no time axis): the scheme and frame count are the ModelConfig defaults.
        defaults: the format's known values for fields shapes cannot give (e.g. layer_norm_eps=1e-12).
    """
    fields = infer_model_fields(state, what)
    guessed = ["num_heads", *(k for k in ("layer_norm_eps",) if k not in defaults)]
    if image:
        guessed += ["attention_type", "num_frames"]
    else:
        fields["attention_type"] = attention_type_of(set(state))
        if "num_frames" not in fields:
            guessed.append("num_frames")
    fields["num_heads"] = default_heads(fields["embed_dim"])
    fields.update(defaults)
    guessed = [k for k in guessed if k not in defaults]
    return model_config(fields), guessed
