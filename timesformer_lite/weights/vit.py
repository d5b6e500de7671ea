"""ImageNet ViT weights (timm, Google's `.npz`, Hugging Face ViT) and their inflation into a TimeSformer.

All three readers produce the timm names, which are ours without the time axis:
`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`,
`norm`, `head`. `inflate` then builds the video model the reference way (official `helpers.load_pretrained`):
each block's spatial attention and its norm are copied into every step the scheme adds (`temporal_*`,
`width_*`, `local_*`), the added steps' `*_fc` are zero and so is the time embedding, so the inflated
model computes exactly the ViT on every frame until training moves the zeros.
"""

from __future__ import annotations

import re
import zipfile
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import Config, ModelConfig
from ..model.blocks import SCHEMES
from .checkpoint import Checkpoint
from .hf import classes_from_id2label, config_from_hf
from .infer import inferred_config
from .io import WeightsError, check_format, check_zip_size, first_line


def inflate(state: dict[str, Tensor], cfg: ModelConfig) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Add the time axis to an image ViT state dict (timm names) for the scheme and frame count of `cfg`.

    Returns:
        The inflated state dict and, for every tensor added, how it was made.
    """
    out, how = dict(state), {}
    D = state["cls_token"].shape[-1]
    added = [step.prefix for step in SCHEMES[cfg.attention_type] if not step.with_cls]
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    for i in blocks:
        for prefix in added:
            for k in [k for k in state if k.startswith((f"blocks.{i}.norm1.", f"blocks.{i}.attn."))]:
                new = k.replace(f"blocks.{i}.", f"blocks.{i}.{prefix}", 1)
                out[new] = state[k].clone()
                how[new] = f"inflated: copy of {k}"
            dtype = state[f"blocks.{i}.attn.proj.weight"].dtype
            out[f"blocks.{i}.{prefix}fc.weight"] = torch.zeros(D, D, dtype=dtype)
            out[f"blocks.{i}.{prefix}fc.bias"] = torch.zeros(D, dtype=dtype)
            how[f"blocks.{i}.{prefix}fc.weight"] = how[f"blocks.{i}.{prefix}fc.bias"] = "inflated: zero"
    if cfg.attention_type != "space_only":
        out["time_embed"] = torch.zeros(1, cfg.num_frames, D, dtype=state["cls_token"].dtype)
        how["time_embed"] = "inflated: zero"
    return out, how


def _image_checkpoint(
    state: dict[str, Tensor],
    what: str,
    source: str,
    notes: list[str],
    classes: list[str] | None = None,
    **defaults: Any,
) -> Checkpoint:
    model, guessed = inferred_config(state, what, image=True, **defaults)
    return Checkpoint(state, Config(model=model), classes, source, image=True, guessed=guessed, notes=notes)


def checkpoint_from_timm(state: dict[str, Tensor], what: str) -> Checkpoint:
    """A timm `VisionTransformer` state dict. LayerScale factors that are all ones (an identity) are dropped;
    other LayerScale values have no place in TimeSformer and are refused."""
    state, notes = dict(state), []
    scales = [k for k in state if re.fullmatch(r"blocks\.\d+\.ls[12]\.gamma", k)]
    if scales:
        if not all(bool((state[k] == 1).all()) for k in scales):
            raise WeightsError(f"{what} uses LayerScale ({scales[0]}), which TimeSformer blocks do not have")
        for k in scales:
            del state[k]
        notes.append(f"dropped {len(scales)} LayerScale factors equal to 1 (identities)")
    return _image_checkpoint(state, what, "timm", notes, layer_norm_eps=1e-6)


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _npz_block(arrays: dict[str, np.ndarray], prefix: str, used: set[str]) -> dict[str, Tensor]:
    """One `Transformer/encoderblock_i/` of a Google ViT: flax kernels (in, ..., out) -> torch (out, in)."""

    def get(name: str) -> np.ndarray:
        used.add(prefix + name)
        return arrays[prefix + name]

    names = {k[len(prefix) :].split("/")[0] for k in arrays if k.startswith(prefix)}
    norms = sorted((n for n in names if n.startswith("LayerNorm_")), key=lambda n: int(n.split("_")[1]))
    (mha,) = [n for n in names if n.startswith("MultiHeadDotProductAttention_")]
    (mlp,) = [n for n in names if n.startswith("MlpBlock_")]
    out = {}
    for ours, flax in zip(("norm1", "norm2"), norms):
        out[f"{ours}.weight"], out[f"{ours}.bias"] = _t(get(f"{flax}/scale")), _t(get(f"{flax}/bias"))
    D = get(f"{mha}/query/kernel").shape[0]
    # query/key/value kernels are (D, heads, d): output channel h*d + j, as our fused qkv expects per part
    qkv = [get(f"{mha}/{p}/kernel").reshape(D, -1).T for p in ("query", "key", "value")]
    out["attn.qkv.weight"] = _t(np.concatenate(qkv, axis=0))
    if prefix + f"{mha}/query/bias" in arrays:
        out["attn.qkv.bias"] = _t(
            np.concatenate([get(f"{mha}/{p}/bias").reshape(-1) for p in ("query", "key", "value")])
        )
    out["attn.proj.weight"] = _t(get(f"{mha}/out/kernel").reshape(-1, D).T)  # (heads, d, D) -> (D, heads*d)
    out["attn.proj.bias"] = _t(get(f"{mha}/out/bias"))
    for ours, dense in (("mlp.fc1", "Dense_0"), ("mlp.fc2", "Dense_1")):
        out[f"{ours}.weight"] = _t(get(f"{mlp}/{dense}/kernel").T)
        out[f"{ours}.bias"] = _t(get(f"{mlp}/{dense}/bias"))
    return out


def checkpoint_from_npz(arrays: dict[str, np.ndarray], what: str) -> Checkpoint:
    """Google's ViT `.npz` (google-research/vision_transformer, big_vision). Arrays without a counterpart
    (e.g. `pre_logits/*` of the ImageNet-21k models) are kept under their own names: reported as unexpected."""
    used: set[str] = set()

    def get(name: str) -> np.ndarray:
        if name not in arrays:
            raise WeightsError(f"{what} has no array {name!r}; is it a Google ViT .npz? (source='vit_npz')")
        used.add(name)
        return arrays[name]

    state = {
        "patch_embed.proj.weight": _t(get("embedding/kernel").transpose(3, 2, 0, 1)),  # HWIO -> OIHW
        "patch_embed.proj.bias": _t(get("embedding/bias")),
        "cls_token": _t(get("cls")),
        "pos_embed": _t(get("Transformer/posembed_input/pos_embedding")),
        "norm.weight": _t(get("Transformer/encoder_norm/scale")),
        "norm.bias": _t(get("Transformer/encoder_norm/bias")),
    }
    if "head/kernel" in arrays:
        state["head.weight"], state["head.bias"] = _t(get("head/kernel").T), _t(get("head/bias"))
    blocks = sorted({int(m.group(1)) for k in arrays if (m := re.match(r"Transformer/encoderblock_(\d+)/", k))})
    for i in blocks:
        block = _npz_block(arrays, f"Transformer/encoderblock_{i}/", used)
        state.update({f"blocks.{i}.{k}": v for k, v in block.items()})
    state.update({k: _t(v) for k, v in arrays.items() if k not in used})
    query = next(k for k in arrays if k.startswith("Transformer/encoderblock_0/") and k.endswith("query/kernel"))
    return _image_checkpoint(state, what, "vit_npz", [], num_heads=arrays[query].shape[1], layer_norm_eps=1e-6)


def read_npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of an `.npz`, refusing pickled objects and arrays whose header claims more than their member holds.

    Every member is checked (zip sizes, then the `.npy` header's shape and dtype against the member's real
    size) before any array is decompressed.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            check_zip_size(path, zf)
            for info in zf.infolist():
                with zf.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    # numpy's own header readers (they also limit the header's length); 3.0 is 2.0 in UTF-8
                    header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = header(member)
                    if dtype.hasobject:
                        raise WeightsError(
                            f"refusing to load '{path}': array {info.filename!r} holds pickled Python objects, and "
                            "unpickling them could run code; weights are plain numeric arrays (np.savez of floats)"
                        )
                    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    if need != info.file_size - member.tell():
                        raise WeightsError(
                            f"'{path}': array {info.filename!r} claims shape {shape} ({need:,} bytes) but its "
                            f"member holds {info.file_size - member.tell():,}; the file is damaged"
                        )
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except WeightsError:
        raise
    except Exception as e:  # zipfile, zlib and numpy raise many types for a damaged file
        check_format(path, "npz", "a .npz of arrays")
        raise WeightsError(f"'{path}' is not a readable .npz of plain arrays: {first_line(e)}") from e


# (HF, ours) inside a layer; files on the Hub (and save_pretrained) use the first names, a transformers 5.x
# model in memory the second (`layers.i.attention.o_proj`, `mlp.fc1`)
_HF_VIT_BLOCK = [
    ("layernorm_before.", "norm1."),
    ("attention.output.dense.", "attn.proj."),
    ("attention.o_proj.", "attn.proj."),
    ("layernorm_after.", "norm2."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
    ("mlp.fc1.", "mlp.fc1."),
    ("mlp.fc2.", "mlp.fc2."),
]
_HF_VIT_QKV = re.compile(r"attention\.(?:attention\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)")
_QKV_PART = {"q": "query", "k": "key", "v": "value"}
_HF_VIT_TOP = [
    ("embeddings.cls_token", "cls_token"),
    ("embeddings.position_embeddings", "pos_embed"),
    ("embeddings.patch_embeddings.projection.", "patch_embed.proj."),
    ("layernorm.", "norm."),
    ("classifier.", "head."),
]
_HF_VIT_UNUSED = ("pooler.", "embeddings.mask_token")  # ViTModel extras TimeSformer has no use for


def checkpoint_from_hf_vit(
    state: dict[str, Tensor], what: str, hf_config: dict[str, Any] | None = None, config_file: str | None = None
) -> Checkpoint:
    """HF `ViTModel` / `ViTForImageClassification` tensors: separate query/key/value become the fused qkv.

    Both the Hub names (`vit.encoder.layer.i.attention.attention.query`) and transformers 5.x's in-memory
    names (`vit.layers.i.attention.q_proj`) are read.

    Args:
        state: the HF state dict (with or without the `vit.` prefix).
        what: names the weights in error messages.
        hf_config: the `config.json` contents (heads, eps, labels); without it, heads of width 64 and HF's
            default LayerNorm eps 1e-12.
        config_file: names the config.json in error messages (default: `what`).
    """
    out: dict[str, Tensor] = {}
    notes, unused = [], []
    parts: dict[str, dict[str, Tensor]] = {}  # blocks.i.attn.qkv.{weight,bias} -> {query, key, value}
    for key, v in state.items():
        k = key.removeprefix("vit.")
        if k.startswith(_HF_VIT_UNUSED):
            unused.append(key)
            continue
        m = re.match(r"(?:encoder\.layer|layers)\.(\d+)\.(.*)", k)
        if m:
            i, rest = m.groups()
            qkv = _HF_VIT_QKV.fullmatch(rest)
            if qkv:
                part = qkv.group(1) or _QKV_PART[qkv.group(2)]
                parts.setdefault(f"blocks.{i}.attn.qkv.{qkv.group(3)}", {})[part] = v
                continue
            name = next((ours + rest[len(hf) :] for hf, ours in _HF_VIT_BLOCK if rest.startswith(hf)), None)
            out[f"blocks.{i}.{name}" if name else key] = v
            continue
        name = next((ours + k[len(hf) :] for hf, ours in _HF_VIT_TOP if k == hf or k.startswith(hf)), None)
        out[name or key] = v  # unmapped keys keep their HF names: reported as unexpected
    for k, qkv in parts.items():
        if set(qkv) != {"query", "key", "value"}:
            raise WeightsError(f"{what}: {k} needs query, key and value; the file has {', '.join(sorted(qkv))}")
        out[k] = torch.cat([qkv["query"], qkv["key"], qkv["value"]], dim=0)
    if unused:
        notes.append(f"dropped {', '.join(unused)} (ViTModel parts TimeSformer does not use)")
    defaults: dict[str, Any] = {"layer_norm_eps": 1e-12}
    classes = None
    if hf_config is not None:
        # the checks of a Timesformer config.json, with ViT's LayerNorm default: each bad entry is named
        hf = config_from_hf({"layer_norm_eps": 1e-12, **hf_config}, what=config_file or what)
        defaults = {"num_heads": hf.num_heads, "layer_norm_eps": hf.layer_norm_eps}
        classes = (
            classes_from_id2label(hf_config.get("id2label"), config_file or what) if "head.weight" in out else None
        )
    return _image_checkpoint(out, what, "hf_vit", notes, classes, **defaults)
