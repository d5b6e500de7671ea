"""Hugging Face `transformers` Timesformer <-> ours: parameter names, config fields, `save_pretrained` folders.

Our parameter names are the official TimeSformer ones (`blocks.3.temporal_attn.qkv.weight`); HF renamed
them (`timesformer.encoder.layer.3.temporal_attention.attention.qkv.weight`). Both use the same tensor
shapes and the same fused q;k;v layout, so conversion is renaming only. Reading and writing a folder
needs no `transformers`: it is a `config.json`, a `model.safetensors` and a `preprocessor_config.json`.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..config import Config, ConfigError, DataConfig, ModelConfig, model_config
from .checkpoint import Checkpoint, reference_state
from .infer import inferred_config
from .io import WeightsError, atomic_write_all, read_safetensors, safetensors_writer, torch_load

log = logging.getLogger("timesformer_lite.weights")

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


def _rename_all(state: dict[str, Tensor], to_hf: bool) -> tuple[dict[str, Tensor], list[str]]:
    """Rename every key one way; return the renamed dict and the keys that have no counterpart."""
    out, unmapped = {}, []
    for k, v in state.items():
        name = _rename(k, to_hf)
        if name is None:
            unmapped.append(k)
        else:
            out[name] = v
    return out, unmapped


def state_dict_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict -> `TimesformerForVideoClassification` names. Raises on a key with no HF name."""
    out, unmapped = _rename_all(state, to_hf=True)
    if unmapped:
        raise KeyError(
            f"{len(unmapped)} parameters have no Hugging Face name (HF has only divided, joint and space_only "
            f"attention): {', '.join(unmapped[:5])}"
        )
    return out


def state_dict_from_hf(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """HF names -> ours. Returns the converted dict and the HF keys that have no counterpart."""
    return _rename_all(state, to_hf=False)


def config_to_hf(cfg: ModelConfig, id2label: dict[int, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `transformers.TimesformerConfig` describing the same network."""
    if cfg.attention_type not in ("divided_space_time", "joint_space_time", "space_only"):
        raise ValueError(f"Hugging Face Timesformer has no {cfg.attention_type!r} attention")
    out = dict(
        image_size=cfg.img_size,
        patch_size=cfg.patch_size,
        num_channels=cfg.in_chans,
        num_frames=cfg.num_frames,
        hidden_size=cfg.embed_dim,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.mlp_hidden,
        hidden_act="gelu",
        hidden_dropout_prob=cfg.drop_rate,
        attention_probs_dropout_prob=cfg.attn_drop_rate,
        initializer_range=cfg.init_std,
        layer_norm_eps=cfg.layer_norm_eps,
        qkv_bias=cfg.qkv_bias,
        attention_type=cfg.attention_type,
        # transformers 5.x types this field as int: pass whole numbers as int
        drop_path_rate=int(cfg.drop_path_rate) if float(cfg.drop_path_rate).is_integer() else cfg.drop_path_rate,
        num_labels=cfg.num_classes,
    )
    if id2label is not None:
        out["id2label"] = {int(k): v for k, v in id2label.items()}
        out["label2id"] = {v: int(k) for k, v in id2label.items()}
    return out


# config.json key -> (ModelConfig field, transformers' default when the key is absent)
_HF_FIELDS: dict[str, tuple[str, Any]] = {
    "image_size": ("img_size", 224),
    "patch_size": ("patch_size", 16),
    "num_channels": ("in_chans", 3),
    "num_frames": ("num_frames", 8),
    "hidden_size": ("embed_dim", 768),
    "num_hidden_layers": ("depth", 12),
    "num_attention_heads": ("num_heads", 12),
    "qkv_bias": ("qkv_bias", True),
    "attention_type": ("attention_type", "divided_space_time"),
    "hidden_dropout_prob": ("drop_rate", 0.0),
    "attention_probs_dropout_prob": ("attn_drop_rate", 0.0),
    "drop_path_rate": ("drop_path_rate", 0.0),
    "layer_norm_eps": ("layer_norm_eps", 1e-6),
    "initializer_range": ("init_std", 0.02),
    "num_labels": ("num_classes", 400),
}
_HF_NAMES = {f"model.{ours}": key for key, (ours, _) in _HF_FIELDS.items()} | {
    "model.mlp_ratio": "intermediate_size / hidden_size"
}


def _positive_int(hf: dict[str, Any], key: str, default: int, what: str) -> int:
    value = hf.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise WeightsError(f"{what}: {key}={value!r} must be a positive integer; fix that entry of the file")
    return value


def config_from_hf(hf: dict[str, Any], *, what: str = "config.json", **overrides: Any) -> ModelConfig:
    """A `ModelConfig` from a Timesformer `config.json` dict (or `TimesformerConfig.to_dict()`).

    Args:
        hf: the config.json contents.
        what: names the file in error messages.
        overrides: `ModelConfig` fields to set instead of the file's (their errors are `ConfigError`s).

    Raises:
        WeightsError: an entry that describes no TimeSformer (hidden_size 0 or "abc", heads that do not
            divide it, ...), named by its config.json key.
    """
    act = hf.get("hidden_act", "gelu")
    if act != "gelu":
        raise WeightsError(f"{what}: hidden_act={act!r} is not supported (TimeSformer uses exact 'gelu')")
    hidden = _positive_int(hf, "hidden_size", 768, what)
    values = {ours: hf.get(key, default) for key, (ours, default) in _HF_FIELDS.items()}
    if "num_labels" not in hf and isinstance(hf.get("id2label"), dict):
        values["num_classes"] = len(hf["id2label"])
    values["mlp_ratio"] = _positive_int(hf, "intermediate_size", 4 * hidden, what) / hidden
    try:
        cfg = model_config(values)
    except ConfigError as e:
        message = re.sub(r"model\.\w+", lambda m: _HF_NAMES.get(m.group(0), m.group(0)), str(e))
        raise WeightsError(f"{what}: {message}; fix that entry of the file") from e
    return model_config(cfg, **overrides)


def classes_from_id2label(id2label: Any, what: str = "config.json") -> list[str] | None:
    """Class names from `id2label`, or None when it is absent or holds transformers' placeholders `LABEL_i`.

    Raises:
        WeightsError: `id2label` does not map the indices 0..N-1 (as numbers or digit strings) to names.
    """
    if not id2label:
        return None
    by_index = {}
    if isinstance(id2label, dict):
        by_index = {int(k): v for k, v in id2label.items() if re.fullmatch(r"\d+", str(k)) and isinstance(v, str)}
    if not by_index or len(by_index) != len(id2label) or sorted(by_index) != list(range(len(by_index))):
        shown = json.dumps(id2label, default=str)[:80]
        raise WeightsError(
            f'{what}: id2label must map the class indices 0..N-1 to names, like {{"0": "abseiling"}}; '
            f"it is {shown}: fix it, or delete it to load the model without class names"
        )
    labels = [by_index[i] for i in range(len(by_index))]
    return None if all(re.fullmatch(r"LABEL_\d+", label) for label in labels) else labels


def checkpoint_from_hf(
    state: dict[str, Tensor],
    what: str,
    hf_config: dict[str, Any] | None = None,
    preprocessor: dict[str, Any] | None = None,
    config_file: str | None = None,
) -> Checkpoint:
    """A `Checkpoint` from HF Timesformer tensors (classification or bare `TimesformerModel` names).

    Args:
        state: the HF state dict.
        what: names the weights in error messages.
        hf_config: the `config.json` contents; without it the architecture is inferred from shapes.
        preprocessor: the `preprocessor_config.json` contents, for the normalisation mean and std.
        config_file: names the config.json in error messages (default: `what`).
    """
    if not any(k.startswith("timesformer.") for k in state):  # TimesformerModel: no prefix, no classifier
        state = {f"timesformer.{k}": v for k, v in state.items()}
    ours, unmapped = state_dict_from_hf(state)
    ours.update({k: state[k] for k in unmapped})  # kept under their HF names: reported as unexpected
    if hf_config is not None:
        model, guessed = config_from_hf(hf_config, what=config_file or what), []
        classes = classes_from_id2label(hf_config.get("id2label"), config_file or what)
    else:
        model, guessed = inferred_config(ours, what)
        classes = None
    data = DataConfig()
    if preprocessor and "image_mean" in preprocessor and "image_std" in preprocessor:
        data = DataConfig(mean=list(preprocessor["image_mean"]), std=list(preprocessor["image_std"]))
    return Checkpoint(ours, Config(model=model, data=data), classes, "hf", guessed=guessed)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"'{path}' is not readable JSON: {e}") from e
    if not isinstance(data, dict):
        raise WeightsError(f"'{path}' holds a JSON {type(data).__name__}, not an object of settings; is it damaged?")
    return data


def read_hf_weights(directory: Path) -> dict[str, Tensor]:
    """The tensors of a `save_pretrained` folder (`model.safetensors`, else `pytorch_model.bin`)."""
    if (directory / "model.safetensors").is_file():
        return read_safetensors(directory / "model.safetensors")[0]
    if (directory / "pytorch_model.bin").is_file():
        return torch_load(directory / "pytorch_model.bin")
    if any(directory.glob("*.index.json")):
        raise WeightsError(f"'{directory}' holds sharded weights; merge them (save_pretrained(max_shard_size='100GB'))")
    raise WeightsError(f"'{directory}' has a config.json but no model.safetensors or pytorch_model.bin")


def read_hf_dir(directory: str | Path) -> Checkpoint:
    """A `Checkpoint` from a `TimesformerForVideoClassification.save_pretrained` folder."""
    directory = Path(directory)
    hf_config = read_json(directory / "config.json")
    if hf_config.get("model_type") != "timesformer":
        raise WeightsError(
            f"'{directory}/config.json' has model_type={hf_config.get('model_type')!r}, not 'timesformer'"
        )
    pre = directory / "preprocessor_config.json"
    preprocessor = read_json(pre) if pre.is_file() else None
    weights = read_hf_weights(directory)
    return checkpoint_from_hf(weights, f"'{directory}' (hf)", hf_config, preprocessor, f"'{directory / 'config.json'}'")


def _preprocessor(cfg: ModelConfig, config: Config) -> dict[str, Any]:
    """`preprocessor_config.json`: the video processor HF's Timesformer cards use, with our normalisation."""
    return {
        "image_processor_type": "VideoMAEImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": cfg.img_size},
        "do_center_crop": True,
        "crop_size": {"height": cfg.img_size, "width": cfg.img_size},
        "resample": 2,  # bilinear
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(config.data.mean),
        "image_std": list(config.data.std),
    }


def save_hf(
    directory: str | Path, model: nn.Module, config: Config | None = None, classes: list[str] | None = None
) -> Path:
    """Write `model` as a folder that `TimesformerForVideoClassification.from_pretrained` loads.

    Args:
        directory: the folder (created if needed). Its three files are all written to temporary files first and
            renamed only when every one succeeded, so a failure (a full disk) leaves the old folder as it was.
        model: a `TimeSformer` with divided, joint or space_only attention (the schemes HF has); a `tl.fuse`
            copy is refused.
        config: the run config; its normalisation goes to `preprocessor_config.json`. Defaults to
            `model.run_config` when present.
        classes: class names for `id2label`; defaults to `model.classes` when present.
    """
    directory = Path(directory)
    state = reference_state(model, f"saving '{directory}'")
    cfg: ModelConfig = model.cfg
    config = config if config is not None else getattr(model, "run_config", None) or Config()
    classes = classes if classes is not None else getattr(model, "classes", None)
    if classes is not None and len(classes) != cfg.num_classes:
        raise WeightsError(f"{len(classes)} class names for a head of {cfg.num_classes} classes")
    hf_config = config_to_hf(cfg, dict(enumerate(classes)) if classes else None)
    hf_config.update(model_type="timesformer", architectures=["TimesformerForVideoClassification"])
    if not isinstance(hf_config["drop_path_rate"], int):
        # transformers 5.x types drop_path_rate as int and refuses a config.json with 0.1; it only matters for training
        log.warning("drop_path_rate=%s written as 0 in '%s/config.json' (transformers 5.x accepts only integers)",
                    hf_config["drop_path_rate"], directory)  # fmt: skip
        hf_config["drop_path_rate"] = 0
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict_to_hf(state).items()}
    weights = directory / "model.safetensors"
    writes = {weights: safetensors_writer(weights, tensors, {"format": "pt"})}
    for name, content in (("preprocessor_config.json", _preprocessor(cfg, config)), ("config.json", hf_config)):
        text = json.dumps(content, indent=2) + "\n"
        writes[directory / name] = lambda tmp, text=text: Path(tmp).write_text(text)
    atomic_write_all(writes)
    return directory
