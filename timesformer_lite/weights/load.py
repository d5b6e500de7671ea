"""`load_pretrained`: any supported weight file -> a ready `TimeSformer`, the format detected from the file.

Detection, in order (`source=` skips it):

| what the path is                                               | source     |
| -------------------------------------------------------------- | ---------- |
| a folder whose config.json has model_type "timesformer" / "vit" | hf / hf_vit |
| `*.pdparams`                                                    | paddle     |
| `*.npz`                                                         | vit_npz    |
| `*.safetensors` with metadata format "timesformer_lite"          | ours       |
| a torch file holding a dict with format "timesformer_lite"       | ours       |
| a torch file with `model_state` (the official wrapper)           | official   |
| otherwise, by key names (after removing `module.` / `model.`):   |            |
|   `...attention.attention.query...` / `...attention.q_proj...`   | hf_vit     |
|   `timesformer.*`, or `embeddings.*` / `encoder.*`               | hf         |
|   `patch_embed.proj.weight` with a time axis (`time_embed`, `*_attn`) | official |
|   `patch_embed.proj.weight` without one                          | timm       |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from ..config import Config, model_config
from ..model import TimeSformer
from .checkpoint import Checkpoint, from_safetensors, from_trainer_dict, read_checkpoint
from .fit import check_fit, fit
from .hf import checkpoint_from_hf, read_hf_dir, read_hf_weights, read_json
from .io import WeightsError, read_safetensors, torch_load
from .official import checkpoint_from_official, unwrap_state_dict
from .paddle import checkpoint_from_paddle, read_pdparams
from .resolve import resolve
from .vit import checkpoint_from_hf_vit, checkpoint_from_npz, checkpoint_from_timm, read_npz
from .zoo import class_list

SOURCES = ("ours", "hf", "official", "paddle", "timm", "vit_npz", "hf_vit")
_TIME_AXIS = ("time_embed", ".temporal_attn.", ".local_attn.", ".width_attn.")


def _source_of_keys(keys: list[str], what: str) -> str:
    if any(".attention.attention.query." in k or ".attention.q_proj." in k for k in keys):
        return "hf_vit"
    if any(k.startswith(("timesformer.", "embeddings.", "encoder.")) for k in keys):
        return "hf"
    if "patch_embed.proj.weight" in keys:
        return "official" if any(k == "time_embed" or any(t in k for t in _TIME_AXIS) for k in keys) else "timm"
    raise WeightsError(
        f"cannot tell the format of {what} from its keys ({', '.join(keys[:4])}, ...); "
        f"pass source= one of {', '.join(SOURCES)}"
    )


def _from_state(state: dict[str, Tensor], source: str, what: str) -> Checkpoint:
    readers = {
        "hf": checkpoint_from_hf,
        "official": checkpoint_from_official,
        "timm": checkpoint_from_timm,
        "hf_vit": checkpoint_from_hf_vit,
    }
    if source not in readers:
        raise WeightsError(f"{what} is a plain state dict; source={source!r} needs a different file type")
    return readers[source](state, what)


def _read_folder(path: Path, source: str | None) -> Checkpoint:
    if not (path / "config.json").is_file():
        raise WeightsError(f"folder '{path}' has no config.json; expected a Hugging Face save_pretrained folder")
    model_type = read_json(path / "config.json").get("model_type")
    source = source or {"timesformer": "hf", "vit": "hf_vit"}.get(model_type)
    if source == "hf":
        return read_hf_dir(path)
    if source == "hf_vit":
        config = path / "config.json"
        return checkpoint_from_hf_vit(read_hf_weights(path), f"'{path}' (hf_vit)", read_json(config), f"'{config}'")
    raise WeightsError(f"'{path}/config.json' has model_type={model_type!r}; supported: 'timesformer', 'vit'")


def read_weights(path: str | Path, source: str | None = None, *, revision: str | None = None) -> Checkpoint:
    """Read any supported weight file into a `Checkpoint` (our names), detecting the format unless given.

    Args:
        path: a file or a Hugging Face folder; or, as a string, a zoo name or a hub repo id (see `resolve`).
        source: force the format: one of `SOURCES`.
        revision: for a hub repo id, a branch, tag or commit.
    """
    resolved = resolve(path, revision)
    if resolved.note:  # a zoo name or hub id (or a local path of such a name): read the file, add what it names
        return resolved.apply(read_weights(resolved.path, source or resolved.source))
    path = Path(path)
    if source is not None and source not in SOURCES:
        raise WeightsError(f"unknown source={source!r}; choose one of {', '.join(SOURCES)}")
    if not path.exists():
        raise FileNotFoundError(f"weights '{path}' do not exist")
    if path.is_dir():
        return _read_folder(path, source)
    what = f"'{path}'"
    if source == "ours":
        return read_checkpoint(path)
    if source == "paddle" or (source is None and path.suffix == ".pdparams"):
        return checkpoint_from_paddle(read_pdparams(path), f"{what} (paddle)")
    if source == "vit_npz" or (source is None and path.suffix == ".npz"):
        return checkpoint_from_npz(read_npz(str(path)), f"{what} (vit_npz)")
    if path.suffix == ".safetensors":
        tensors, metadata = read_safetensors(path)
        if source is None and metadata.get("format") == "timesformer_lite":
            return from_safetensors(tensors, metadata, what)
        state = tensors
    else:
        obj = torch_load(path)
        if source is None and isinstance(obj, dict) and obj.get("format") == "timesformer_lite":
            return from_trainer_dict(obj, what)
        if source is None and isinstance(obj, dict) and "model_state" in obj:
            source = "official"
        state = unwrap_state_dict(obj, what)
    source = source or _source_of_keys(list(state), what)
    return _from_state(state, source, f"{what} ({source})")


def detect(path: str | Path) -> str:
    """The format `load_pretrained` would read `path` as (one of `SOURCES`); reads the file."""
    return read_weights(path).source


def load_pretrained(
    path: str | Path,
    source: str | None = None,
    strict: bool = True,
    *,
    keep_vit_head: bool = False,
    revision: str | None = None,
    classes: str | list[str] | None = None,
    **overrides: Any,
) -> TimeSformer:
    """A `TimeSformer` with the weights of `path`, in any supported format, in eval mode.

    Args:
        path: our `.safetensors` or trainer `.pt`; a Hugging Face Timesformer folder or state dict file; an
            official `.pyth`/`.pth`; a PaddleVideo `.pdparams`; or ImageNet ViT weights (timm file, Google
            `.npz`, HF ViT folder/file, PaddleClas `.pdparams`), which are inflated into a video model.
            As a string also a zoo name ("paddlevideo/timesformer-k400", `timesformer-lite download --list`),
            downloaded once into the cache, or a Hugging Face hub repo id ("facebook/timesformer-base-finetuned-k400");
            a local path of the same name wins (the report's first note says which was used).
        source: force the format ("ours", "hf", "official", "paddle", "timm", "vit_npz", "hf_vit");
            None detects it (see the module docstring).
        strict: refuse missing, unexpected or mis-shaped keys (default), naming them and the fix;
            False loads what fits, leaves the rest at initialisation, and lists everything in the report.
        keep_vit_head: for ImageNet ViT weights, keep the image classifier (by default a new head is made).
        revision: for a hub repo id: a branch, tag or commit hash (default: the default branch).
        classes: class names for a file that has none (an official `.pyth`): "kinetics400", "kinetics600",
            "ssv2", a text file with one name per line, or a list; their number must match the head.
        overrides: any `ModelConfig` field. Fields the file cannot tell (num_heads, layer_norm_eps,
            attention_type for a ViT, ...) are set; `num_classes` different from the file's gives a new
            head; `img_size` / `num_frames` resize `pos_embed` (2-D nearest) / `time_embed` (nearest),
            exactly as the model interpolates at run time. Unknown keys raise `ConfigError`.

    Returns:
        The model, with attributes
        `classes` (class names in label order, or None when unknown or the head was replaced),
        `run_config` (a `Config`: the resolved model config plus the file's data/train sections when it
        has them, e.g. normalisation mean/std), and
        `load_report` (a `LoadReport`: every key and what was done with it; `print(model.load_report)`).
    """
    ckpt = read_weights(path, source, revision=revision)
    if classes is not None:
        names = class_list(classes)
        if len(names) != ckpt.config.model.num_classes:
            raise WeightsError(
                f"classes={classes if isinstance(classes, str) else '[...]'!r} has {len(names)} names; "
                f"'{path}' has a head of {ckpt.config.model.num_classes} classes"
            )
        ckpt.classes = names
    ckpt.guessed = [name for name in ckpt.guessed if name not in overrides]
    target = model_config(ckpt.config.model, **overrides)
    what = f"'{path}' ({ckpt.source})"
    check_fit(target, ckpt, what, strict=strict, keep_vit_head=keep_vit_head)  # before the model is allocated
    model = TimeSformer(target)
    report = fit(model, ckpt, what, strict=strict, keep_vit_head=keep_vit_head)
    model.classes = None if report.new_head else ckpt.classes
    model.run_config = Config(model=target, data=ckpt.config.data, train=ckpt.config.train)
    model.load_report = report
    return model.eval()
