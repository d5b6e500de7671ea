"""Configuration: dataclasses, YAML presets shipped with the package, and `key=value` overrides.

One mechanism serves the CLI (`--config toy model.depth=4`), papermill (a YAML of parameters) and Python:

    cfg = load_config("toy", ["model.depth=4", "train.epochs=2"])
    cfg.model.depth  # 4

Unknown keys, values of the wrong type and values that make no sense (`model.depth=0`, `train.epochs=-1`,
`model.embed_dim` not divisible by `model.num_heads`, ...) raise `ConfigError` naming the key when the
config is built, so a typo never silently trains the wrong model or fails an hour later.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

# the data package's names, defined here where the config is checked (the data package imports torch)
DATASETS = ("toy", "list", "csv", "folder", "ucf101", "kinetics", "hmdb51")
SAMPLINGS = ("segment", "linspace", "dense")

ATTENTION_TYPES = (
    "divided_space_time",
    "joint_space_time",
    "space_only",
    "sparse_local_global",
    "axial",
)


# the training-speed options' values in the reference model (what "auto" builds outside the trainer)
REFERENCE_OPTIONS = {"fused_attn": True, "short_row_softmax": False, "recompute_gelu": False, "class_token_only": False}


class ConfigError(ValueError):
    """A config key is unknown, or its value has the wrong type or makes no sense."""


def _require(ok: bool, key: str, value: Any, need: str) -> None:
    """Raise `ConfigError("key=value need")` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}={value!r} {need}")


def _at_least(section: Any, prefix: str, minimum: float, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _require(value >= minimum, f"{prefix}.{name}", value, f"must be at least {minimum}")


def _fraction(section: Any, prefix: str, *names: str) -> None:
    """Probabilities that drop something: 1 would drop everything."""
    for name in names:
        value = getattr(section, name)
        _require(0 <= value < 1, f"{prefix}.{name}", value, "must be in [0, 1)")


def _one_of(section: Any, prefix: str, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(section, name)
    _require(value in choices, f"{prefix}.{name}", value, f"is not one of {', '.join(choices)}")


@dataclass
class ModelConfig:
    """The TimeSformer architecture. Defaults are TimeSformer-B/16, 8 frames at 224 px, 400 classes."""

    img_size: int = 224  # training image size; other sizes work at run time (pos_embed interpolated)
    patch_size: int = 16
    in_chans: int = 3
    num_frames: int = 8  # frames the time embedding was built for; other counts are interpolated
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    num_classes: int = 400  # 0: no head, the model returns the final class-token features
    attention_type: str = "divided_space_time"
    time_embed: bool | None = None  # None: the scheme's own (none for space_only); true/false to ablate it
    drop_rate: float = 0.0  # dropout after the MLP layers and attention projections
    attn_drop_rate: float = 0.0  # dropout on attention probabilities
    drop_path_rate: float = 0.1  # stochastic depth, linear from 0 to this over the blocks
    layer_norm_eps: float = 1e-6
    init_std: float = 0.02  # truncated-normal std of Linear weights, pos_embed and cls_token
    pretrained: str = ""  # weights to start from (any format `load_pretrained` reads); "" for none
    # true (the finetune preset): what the preset and overrides leave unset comes from model.pretrained's own
    # record (architecture, frames, image size, clip preprocessing) and num_classes from the dataset
    from_pretrained: bool = False

    # training-speed equivalents, the same numbers (model/attention.py, chosen per device in train/options.py);
    # auto: the trainer's choice for its device, written back resolved; outside the trainer the reference's
    fused_attn: bool | str = "auto"  # scaled_dot_product_attention (false: explicit softmax)
    short_row_softmax: bool | str = "auto"  # the explicit softmax of rows under 32 written out in float32
    recompute_gelu: bool | str = "auto"  # the MLP keeps its hidden layer once, recomputes GELU (needs drop_rate 0)
    class_token_only: bool | str = "auto"  # the last block computes the class token alone

    @property
    def mlp_hidden(self) -> int:
        """The MLP's hidden width, embed_dim * mlp_ratio (3072 in TimeSformer-B), as timm and the official code
        round it."""
        return int(self.embed_dim * self.mlp_ratio)

    def option(self, name: str) -> bool:
        """A training-speed option's value, "auto" read as the reference model's (`REFERENCE_OPTIONS`)."""
        value = getattr(self, name)
        return REFERENCE_OPTIONS[name] if value == "auto" else value

    def __post_init__(self) -> None:
        for name in REFERENCE_OPTIONS:
            value = getattr(self, name)
            _require(
                isinstance(value, bool) or value == "auto", f"model.{name}", value, "is not one of true, false, auto"
            )
        _require(
            not (self.recompute_gelu is True and self.drop_rate > 0),
            "model.recompute_gelu",
            True,
            f"needs model.drop_rate=0 (dropout sits between GELU and fc2; it is {self.drop_rate}): set one of them",
        )
        _one_of(self, "model", "attention_type", ATTENTION_TYPES)
        _at_least(
            self, "model", 1, "img_size", "patch_size", "in_chans", "num_frames", "embed_dim", "depth", "num_heads"
        )
        _at_least(self, "model", 0, "num_classes", "init_std")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"model.embed_dim={self.embed_dim} is not divisible by model.num_heads={self.num_heads}")
        if self.img_size < self.patch_size:
            raise ConfigError(f"model.img_size={self.img_size} is smaller than model.patch_size={self.patch_size}")
        _require(
            self.mlp_hidden >= 1,
            "model.mlp_ratio",
            self.mlp_ratio,
            "must give an MLP of at least 1 unit (embed_dim * mlp_ratio)",
        )
        _fraction(self, "model", "drop_rate", "attn_drop_rate", "drop_path_rate")
        _require(self.layer_norm_eps > 0, "model.layer_norm_eps", self.layer_norm_eps, "must be above 0")

    @property
    def grid(self) -> int:
        """Patches per side at `img_size`."""
        return self.img_size // self.patch_size


@dataclass
class DataConfig:
    """Where clips come from and how they are sampled and transformed (see `timesformer_lite.data`)."""

    dataset: str = "toy"  # toy | list | csv | folder | ucf101 | kinetics | hmdb51
    root: str = "data/toy_motions"  # dataset root; list paths are relative to it
    train_list: str = "train.txt"
    val_list: str = "val.txt"
    test_list: str = "test.txt"
    classes: str = "classes.txt"  # one class name per line, in label order; "" to infer
    split: int = 1  # official split number for ucf101 / hmdb51
    train_sampling: str = "segment"  # segment | dense | linspace
    test_sampling: str = "segment"
    sampling_rate: int = 32  # frame stride for dense sampling (the official 8x32)
    target_fps: float = 30.0  # dense sampling window is num_frames*sampling_rate frames at this fps
    num_clips: int = 1  # temporal views at test time
    num_crops: int = 1  # spatial views at test time (3 = UniformCrop)
    train_scale: list[int] = field(default_factory=lambda: [256, 320])  # short-side jitter range
    test_scale: int = 224  # short side before the test crop
    hflip: bool = True  # off for direction-sensitive data (toy motions, SSv2)
    mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])
    std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])
    num_workers: int | str = 4  # DataLoader processes per training process; "auto": 0 on CPU, up to 8 per GPU
    backend: str = "auto"  # auto (decord, PyAV fallback) | decord | pyav
    cache: bool = False  # decode every video once into memory (small datasets: toy motions)
    # toy-motions generation (used when dataset=toy and root has no data yet)
    toy_per_class: int = 1000
    toy_frames: int = 8
    toy_size: int = 32
    toy_seed: int = 0

    def __post_init__(self) -> None:
        w = self.num_workers
        if w != "auto" and not (isinstance(w, int) and w >= 0):
            raise ConfigError(f"data.num_workers={w!r} must be a number of processes (0 or more) or auto")
        _one_of(self, "data", "dataset", DATASETS)
        _one_of(self, "data", "train_sampling", SAMPLINGS)
        _one_of(self, "data", "test_sampling", SAMPLINGS)
        _one_of(self, "data", "backend", ("auto", "decord", "pyav"))
        _require(self.num_crops in (1, 3), "data.num_crops", self.num_crops, "must be 1 (centre) or 3 (UniformCrop)")
        _at_least(self, "data", 1, "split", "sampling_rate", "num_clips", "test_scale", "toy_per_class")
        _require(self.target_fps > 0, "data.target_fps", self.target_fps, "must be above 0")
        scale = self.train_scale
        _require(
            len(scale) == 2 and 1 <= scale[0] <= scale[1],
            "data.train_scale",
            scale,
            "must be [low, high] with 1 <= low <= high",
        )
        _require(
            len(self.mean) == len(self.std),
            "data.std",
            self.std,
            f"must have one value per channel, like data.mean={self.mean}",
        )
        _require(all(v > 0 for v in self.std), "data.std", self.std, "must be above 0 (it divides)")
        _at_least(self, "data", 2, "toy_frames")
        _require(
            self.toy_size >= 16 and self.toy_size % 2 == 0,
            "data.toy_size",
            self.toy_size,
            "must be even and at least 16",
        )


@dataclass
class TrainConfig:
    """The optimisation recipe and run bookkeeping (see `timesformer_lite.train`)."""

    name: str = "run"  # runs/<name>/ holds checkpoints, metrics and the summary
    out_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    epochs: int = 15
    batch_size: int = 8  # clips per device per step
    grad_accum: int = 1
    optimizer: str = "sgd"  # sgd (Nesterov, the reference recipe) | adamw
    lr: float = 0.005  # for a global batch of `lr_batch` clips, scaled linearly with the real one
    lr_batch: int = 64
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"  # step (x0.1 at milestones) | cosine (with warmup)
    milestones: list[int] = field(default_factory=lambda: [11, 14])
    warmup_epochs: float = 0.0
    clip_grad: float = 0.0  # max grad norm; 0 disables clipping
    amp: str = "none"  # none | bf16 | fp16
    grad_checkpointing: bool = False
    compile: bool = False
    label_smoothing: float = 0.0
    resume: str = ""  # "" | auto | path to a checkpoint
    eval_every: int = 1  # epochs between validations
    checkpoint_every: int = 0  # also save last.pt every N optimizer steps (0: at epoch ends only)
    log_every: int = 10  # read the loss (and check it is finite) every N optimizer steps, as nanoGPT's log_interval
    test_average: str = "logits"  # how test views are combined: logits (official, PaddleVideo) | softmax
    test: bool = True  # run the test protocol on the best checkpoint at the end
    head_only: bool = False  # train the classifier alone: every other parameter is frozen (a linear probe)
    backbone_lr_scale: float = 1.0  # the backbone's learning rate as a share of train.lr (the head's)

    def __post_init__(self) -> None:
        name = PurePosixPath(self.name.replace("\\", "/"))
        _require(
            bool(self.name) and not name.is_absolute() and ".." not in name.parts and name.parts != (".",),
            "train.name",
            self.name,
            "must be a folder name inside train.out_dir (no '..', not absolute), e.g. train.name=toy_divided",
        )
        _require(
            re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
            "train.device",
            self.device,
            "is not one of auto, cpu, cuda, cuda:N, mps",
        )
        _at_least(self, "train", 1, "epochs", "batch_size", "grad_accum", "lr_batch", "eval_every", "log_every")
        _at_least(self, "train", 0, "weight_decay", "warmup_epochs", "clip_grad", "checkpoint_every")
        _require(self.lr > 0, "train.lr", self.lr, "must be above 0")
        _require(0 <= self.momentum < 1, "train.momentum", self.momentum, "must be in [0, 1)")
        _fraction(self, "train", "label_smoothing")
        _require(
            self.backbone_lr_scale > 0,
            "train.backbone_lr_scale",
            self.backbone_lr_scale,
            "must be above 0; to freeze the backbone set train.head_only=true",
        )
        _one_of(self, "train", "optimizer", ("sgd", "adamw"))
        _one_of(self, "train", "schedule", ("step", "cosine"))
        _one_of(self, "train", "amp", ("none", "bf16", "fp16"))
        _one_of(self, "train", "test_average", ("logits", "softmax"))
        _require(
            all(m >= 1 for m in self.milestones), "train.milestones", self.milestones, "must be epochs (1 or more)"
        )


@dataclass
class Config:
    """Everything a run needs; a preset YAML has one section per field."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def presets() -> list[str]:
    """Names of the presets shipped in `timesformer_lite/configs/`."""
    return sorted(
        p.name[:-5] for p in resources.files("timesformer_lite.configs").iterdir() if p.name.endswith(".yaml")
    )


def _read_yaml(name_or_path: str | Path) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist; presets are: {', '.join(presets())}")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file '{path}' cannot be read ({e}); pass a YAML text file") from e
    else:
        res = resources.files("timesformer_lite.configs") / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ConfigError(
                f"unknown preset {str(name_or_path)!r}; presets are: {', '.join(presets())} (or pass a .yaml path)"
            )
        text = res.read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"config {str(name_or_path)!r} is not valid YAML{line}: {problem}; fix the file") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config {str(name_or_path)!r} must be a mapping of sections, got {type(data).__name__}")
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the dataclass field type `tp`; return it converted where lossless."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key} expects a list of {_type_name(item_tp)}, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} expects a string, got {value!r}")
    raise ConfigError(f"{key} has an unsupported type {tp!r}")


def _unknown(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], [k.rsplit(".", 1)[-1] for k in known], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}; valid keys: {', '.join(known)}")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """Instantiate dataclass `cls` from a (partial) mapping, checking every key and type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown(f"{prefix}{key}", [f"{prefix}{n}" for n in names])
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{prefix}{key} is a section; give it a mapping, got {value!r}")
            kwargs[key] = _build(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(f"{prefix}{key}", value, tp)
    return cls(**kwargs)


def parse_override(item: str) -> tuple[str, Any]:
    """`"model.depth=4"` -> `("model.depth", 4)`; the value is read as YAML (numbers, booleans, lists)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value (e.g. model.depth=4)")
    key, raw = item.split("=", 1)
    key = key.strip().removeprefix("--")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as {dotted key: value} (the inverse of `_nest`)."""
    out = {}
    for k, v in values.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def preset_values(preset: str | Path | dict | Config | None) -> dict[str, Any]:
    """The nested values a preset sets: a shipped name or YAML path (read), a dict, a `Config` (every key)."""
    if preset is None:
        return {}
    if isinstance(preset, Config):
        return preset.to_dict()
    if isinstance(preset, dict):
        return preset
    return _read_yaml(preset)


def override_values(overrides: list[str] | dict | None) -> dict[str, Any]:
    """Overrides as {dotted key: value}: `["model.depth=4"]` parsed, a dict as it is."""
    if isinstance(overrides, dict):
        return dict(overrides)
    return dict(parse_override(o) for o in overrides or [])


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} descends into a value that is not a section")
        node[leaf] = value
    return out


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(
    preset: str | Path | dict[str, Any] | Config | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Config:
    """Build a `Config` from a preset name, a YAML path, a dict or a `Config`, then apply overrides.

    Args:
        preset: a shipped preset (`"smoke"`, `"toy"`, `"ucf101"`, `"k400"`), a `.yaml` path, a nested dict,
            or an existing `Config`; `None` gives the defaults.
        overrides: `["model.depth=4", ...]` or `{"model.depth": 4}`; dotted keys reach into sections.

    Raises:
        ConfigError: for an unknown key (with the valid ones listed) or a value of the wrong type.
    """
    merged = _merge(preset_values(preset), _nest(override_values(overrides)))
    return _build(Config, merged, "")


def model_config(values: dict[str, Any] | ModelConfig | None = None, **kwargs: Any) -> ModelConfig:
    """A `ModelConfig` from a mapping plus keyword overrides, with the same checks as `load_config`."""
    base = asdict(values) if isinstance(values, ModelConfig) else dict(values or {})
    base.update(kwargs)
    return _build(ModelConfig, base, "model.")
