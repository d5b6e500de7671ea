"""Hugging Face `transformers` Timesformer <-> ours: parameter names and config fields.

Our parameter names are the official TimeSformer ones (`blocks.3.temporal_attn.qkv.weight`); HF renamed
them (`timesformer.encoder.layer.3.temporal_attention.attention.qkv.weight`). Both use the same tensor
shapes and the same fused q;k;v layout, so conversion is renaming only.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from ..config import ModelConfig, model_config

# (ours, HF) for the parameters outside the blocks
_TOP = [
    ("cls_token", "timesformer.embeddings.cls_token"),
    ("pos_embed", "timesformer.embeddings.position_embeddings"),
    ("time_embed", "timesformer.embeddings.time_embeddings"),
    ("patch_embed.proj.", "timesformer.embeddings.patch_embeddings.projection."),
    ("norm.", "timesformer.layernorm."),
    ("head.", "classifier."),
]
# (ours, HF) inside blocks.{i} / timesformer.encoder.layer.{i}
_BLOCK = [
    ("norm1.", "layernorm_before."),
    ("attn.qkv.", "attention.attention.qkv."),
    ("attn.proj.", "attention.output.dense."),
    ("temporal_norm1.", "temporal_layernorm."),
    ("temporal_attn.qkv.", "temporal_attention.attention.qkv."),
    ("temporal_attn.proj.", "temporal_attention.output.dense."),
    ("temporal_fc.", "temporal_dense."),
    ("norm2.", "layernorm_after."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
]


def _rename(key: str, to_hf: bool) -> str | None:
    src, dst = (0, 1) if to_hf else (1, 0)
    block = (
        re.match(r"blocks\.(\d+)\.(.*)", key) if to_hf else re.match(r"timesformer\.encoder\.layer\.(\d+)\.(.*)", key)
    )
    if block:
        i, rest = block.groups()
        for pair in _BLOCK:
            if rest.startswith(pair[src]):
                tail = pair[dst] + rest[len(pair[src]) :]
                return f"timesformer.encoder.layer.{i}.{tail}" if to_hf else f"blocks.{i}.{tail}"
        return None
    for pair in _TOP:
        if key == pair[src] or (pair[src].endswith(".") and key.startswith(pair[src])):
            return pair[dst] + key[len(pair[src]) :]
    return None


def state_dict_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict -> `TimesformerForVideoClassification` names. Raises on a key with no HF name."""
    out, unmapped = {}, []
    for k, v in state.items():
        name = _rename(k, to_hf=True)
        if name is None:
            unmapped.append(k)
        else:
            out[name] = v
    if unmapped:
        raise KeyError(
            f"{len(unmapped)} parameters have no Hugging Face name (HF has only divided, joint and space_only "
            f"attention): {', '.join(unmapped[:5])}"
        )
    return out


def state_dict_from_hf(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """HF names -> ours. Returns the converted dict and the HF keys that have no counterpart."""
    out, unmapped = {}, []
    for k, v in state.items():
        name = _rename(k, to_hf=False)
        if name is None:
            unmapped.append(k)
        else:
            out[name] = v
    return out, unmapped


def config_to_hf(cfg: ModelConfig, id2label: dict[int, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `transformers.TimesformerConfig` describing the same network."""
    if cfg.attention_type not in ("divided_space_time", "joint_space_time", "space_only"):
        raise ValueError(f"Hugging Face Timesformer has no {cfg.attention_type!r} attention")
    hidden = int(cfg.embed_dim * cfg.mlp_ratio)
    out = dict(
        image_size=cfg.img_size,
        patch_size=cfg.patch_size,
        num_channels=cfg.in_chans,
        num_frames=cfg.num_frames,
        hidden_size=cfg.embed_dim,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        intermediate_size=hidden,
        hidden_act="gelu",
        hidden_dropout_prob=cfg.drop_rate,
        attention_probs_dropout_prob=cfg.attn_drop_rate,
        initializer_range=cfg.init_std,
        layer_norm_eps=cfg.layer_norm_eps,
        qkv_bias=cfg.qkv_bias,
        attention_type=cfg.attention_type,
        drop_path_rate=cfg.drop_path_rate,
        num_labels=cfg.num_classes,
    )
    if id2label is not None:
        out["id2label"] = {int(k): v for k, v in id2label.items()}
        out["label2id"] = {v: int(k) for k, v in id2label.items()}
    return out


def config_from_hf(hf: dict[str, Any], **overrides: Any) -> ModelConfig:
    """A `ModelConfig` from a Timesformer `config.json` dict (or `TimesformerConfig.to_dict()`)."""
    act = hf.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"hidden_act={act!r} is not supported (TimeSformer uses exact 'gelu')")
    hidden = hf.get("hidden_size", 768)
    num_labels = hf.get("num_labels", len(hf.get("id2label") or {}) or 400)
    values = dict(
        img_size=hf.get("image_size", 224),
        patch_size=hf.get("patch_size", 16),
        in_chans=hf.get("num_channels", 3),
        num_frames=hf.get("num_frames", 8),
        embed_dim=hidden,
        depth=hf.get("num_hidden_layers", 12),
        num_heads=hf.get("num_attention_heads", 12),
        mlp_ratio=hf.get("intermediate_size", 4 * hidden) / hidden,
        qkv_bias=hf.get("qkv_bias", True),
        num_classes=num_labels,
        attention_type=hf.get("attention_type", "divided_space_time"),
        drop_rate=float(hf.get("hidden_dropout_prob", 0.0)),
        attn_drop_rate=float(hf.get("attention_probs_dropout_prob", 0.0)),
        drop_path_rate=float(hf.get("drop_path_rate", 0.0)),
        layer_norm_eps=float(hf.get("layer_norm_eps", 1e-6)),
        init_std=float(hf.get("initializer_range", 0.02)),
    )
    values.update(overrides)
    return model_config(values)
