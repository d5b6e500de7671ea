"""Our own checkpoint format, and the `Checkpoint` every importer returns.

A timesformer_lite checkpoint is one `.safetensors` file: the tensors are the model's state dict, the
metadata (strings only) is

    format  "timesformer_lite"
    version "1"
    config  JSON of `Config.to_dict()`: model, data (normalisation, sampling, ...), train
    classes JSON list of class names in label order, or null

so a file alone is enough to predict. The trainer's `.pt` checkpoints (a `torch.save` dict with
`format`, `version`, `model`, `config`, `classes`, `optimizer`, ...) are read too, with `weights_only`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import Config, ConfigError, ModelConfig, load_config
from ..model import TimeSformer
from .io import WeightsError, atomic_write, read_safetensors, safetensors_writer, torch_load

FORMAT = "timesformer_lite"
VERSION = "1"


@dataclass
class Checkpoint:
    """Weights in our parameter names plus what is known about them.

    Args:
        state_dict: tensors named like `TimeSformer.state_dict()` (for an image ViT: its 2-D subset).
        config: the run config; for foreign formats `config.model` is inferred from shapes and defaults.
        classes: class names in label order, or None when the file has none.
        source: the format read ("ours", "hf", "official", "paddle", "timm", "vit_npz", "hf_vit").
        image: True for an image ViT, to be inflated into a TimeSformer.
        guessed: ModelConfig fields that were not in the file and came from the format's defaults.
        notes: what the reader did beyond renaming (e.g. dropped a pooler the model does not use).
    """

    state_dict: dict[str, Tensor]
    config: Config
    classes: list[str] | None = None
    source: str = "ours"
    image: bool = False
    guessed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _check_classes(classes: list[str] | None, num_classes: int, what: str) -> list[str] | None:
    if classes is None:
        return None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise WeightsError(f"{what}: classes must be a list of strings, got {type(classes).__name__}")
    if num_classes and len(classes) != num_classes:
        raise WeightsError(f"{what}: {len(classes)} class names for a head of {num_classes} classes")
    return list(classes)


def reference_state(model: nn.Module, what: str) -> dict[str, Tensor]:
    """`model.state_dict()`, checked to hold exactly the tensors of the reference `TimeSformer(model.cfg)`.

    A fused model (`tl.fuse`) folds some of them away, so a file of its tensors would not load; the check builds
    the reference on the meta device, which allocates nothing.

    Raises:
        WeightsError: `model` is not a TimeSformer, or its tensors are not the reference's (names the first).
    """
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ModelConfig):
        raise WeightsError(f"{what}: {type(model).__name__} is not a TimeSformer (it has no ModelConfig .cfg)")
    with torch.device("meta"):
        expected = {k: v.shape for k, v in TimeSformer(cfg).state_dict().items()}
    state = model.state_dict()
    if {k: v.shape for k, v in state.items()} != expected:
        missing = sorted(expected.keys() - state.keys())
        odd = missing or sorted(state.keys() - expected.keys()) or [k for k in state if state[k].shape != expected[k]]
        raise WeightsError(
            f"{what}: {type(model).__name__} does not hold the reference TimeSformer's tensors ('{odd[0]}' "
            f"{'missing' if missing else 'differs'}), so the file would not load; a tl.fuse(model) copy is for "
            "inference only: save the model you fused"
        )
    return state


def save_model(
    path: str | Path, model: nn.Module, config: Config | None = None, classes: list[str] | None = None
) -> Path:
    """Write `model` as a timesformer_lite `.safetensors` checkpoint, atomically.

    Args:
        path: destination; must end in `.safetensors`. Its directory is created if needed.
        model: a `TimeSformer` (the reference model: a `tl.fuse` copy is refused, its folds would not load).
        config: the run config to store; defaults to `model.run_config` when the model was loaded, else the
            defaults. Its `model` section is always replaced by `model.cfg`, the architecture of the weights.
        classes: class names in label order; defaults to `model.classes` when present.

    Returns:
        The path written. A temporary file in the same directory is renamed over it, so readers never see
        a half-written checkpoint.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"checkpoint path '{path}' must end in .safetensors")
    state = reference_state(model, f"saving '{path}'")
    config = config if config is not None else getattr(model, "run_config", None) or Config()
    config = dataclasses.replace(config, model=model.cfg)
    classes = classes if classes is not None else getattr(model, "classes", None)
    classes = _check_classes(classes, model.cfg.num_classes, f"saving '{path}'")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(config.to_dict()),
        "classes": json.dumps(classes),
    }
    return atomic_write(path, safetensors_writer(path, tensors, metadata))


def _config(values: Any, what: str) -> Config:
    if not isinstance(values, dict):
        raise WeightsError(f"{what}: the stored config is not a mapping")
    try:
        return load_config(values)
    except ConfigError as e:
        raise WeightsError(f"{what}: the stored config does not fit this version of timesformer_lite: {e}") from e


def _metadata_json(metadata: dict[str, str], key: str, what: str) -> Any:
    if key not in metadata:
        raise WeightsError(f"{what} has no {key!r} metadata; re-save it with timesformer_lite.save_model")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as e:
        raise WeightsError(f"{what}: its {key!r} metadata is not valid JSON ({e}); the file is damaged") from e


def from_safetensors(tensors: dict[str, Tensor], metadata: dict[str, str], what: str) -> Checkpoint:
    """A `Checkpoint` from the contents of one of our `.safetensors` files."""
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{what} is not a timesformer_lite checkpoint (metadata format={metadata.get('format')!r})")
    if metadata.get("version") != VERSION:
        raise WeightsError(
            f"{what} is checkpoint version {metadata.get('version')!r}; this timesformer_lite reads version {VERSION}"
        )
    config = _config(_metadata_json(metadata, "config", what), what)
    classes = _metadata_json(metadata, "classes", what) if "classes" in metadata else None
    classes = _check_classes(classes, config.model.num_classes, what)
    return Checkpoint(tensors, config, classes, "ours")


# what `Trainer.resume` needs beyond the weights; best.pt is written without them
TRAINING_STATE = ("optimizer", "scheduler", "scaler", "rng", "epoch", "step_in_epoch", "global_step", "history")


def check_trainer_dict(obj: Any, what: str, training_state: bool = False) -> dict[str, Any]:
    """`obj` if it is a trainer checkpoint dict of this version, with a state dict of tensors under `model`.

    Args:
        obj: what `torch_load` returned.
        what: names the file in error messages.
        training_state: also require everything a resume needs (optimizer, scheduler, RNG, position, ...).
    """
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise WeightsError(f"{what} is not a timesformer_lite checkpoint (no format={FORMAT!r} entry)")
    if str(obj.get("version")) != VERSION:
        raise WeightsError(
            f"{what} is checkpoint version {obj.get('version')!r}; this timesformer_lite reads version {VERSION}"
        )
    state = obj.get("model")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{what}: entry 'model' is not a state dict of tensors")
    missing = [k for k in TRAINING_STATE if k not in obj] if training_state else []
    if missing:
        raise WeightsError(
            f"{what} holds weights only (no {', '.join(missing)}), so a run cannot resume from it; "
            "resume from the run's last.pt, or load it with model.pretrained= to fine-tune"
        )
    return obj


def read_trainer_checkpoint(path: str | Path, training_state: bool = False) -> dict[str, Any]:
    """The dict of a trainer `.pt` (`last.pt`, `best.pt`), read with `weights_only` and checked.

    The one reader of the trainer's files: resuming, the trainer's final test and `load_pretrained` use it.

    Args:
        path: the checkpoint.
        training_state: require everything a resume needs (see `check_trainer_dict`).

    Raises:
        FileNotFoundError: no such file.
        WeightsError: unreadable, truncated, foreign, another version, or (with training_state) weights only.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    return check_trainer_dict(torch_load(path), f"'{path}'", training_state)


def from_trainer_dict(obj: dict[str, Any], what: str) -> Checkpoint:
    """A `Checkpoint` from the dict the trainer writes with `torch.save` (optimizer state etc. are ignored)."""
    obj = check_trainer_dict(obj, what)
    config = _config(obj.get("config"), what)
    classes = _check_classes(obj.get("classes"), config.model.num_classes, what)
    return Checkpoint(dict(obj["model"]), config, classes, "ours")


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read one of our checkpoints: a `.safetensors` written by `save_model` or a trainer `.pt`.

    Other formats are read by `load_pretrained`, which detects them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    if path.suffix == ".safetensors":
        return from_safetensors(*read_safetensors(path), f"'{path}'")
    return from_trainer_dict(read_trainer_checkpoint(path), f"'{path}'")
