"""Fine-tuning from trained weights: a run's config completed from the weights and the data it starts from.

    timesformer-lite train --config finetune data.root=my_videos model.pretrained=timesformer-lite/toy-divided

With `model.from_pretrained=true` (the `finetune` preset), whatever the preset and the overrides leave unset is
taken from where it is known, as timm resolves a data config from a pretrained model's own:
- the architecture, frame count and image size (`INHERITED_MODEL`) from the weights' own record (our
  checkpoints record their run config, a Hugging Face folder its config.json, other formats what their
  tensor shapes tell: the number of heads of a timm ViT is then a guess, said in the line below);
- how a clip becomes a tensor (`INHERITED_DATA`: sampling, scales, views, normalisation) from the same record,
  so the model sees clips prepared as in its own training: all of it from our checkpoints, the normalisation
  from a Hugging Face folder's preprocessor; the clip sizes of weights that do not record them follow their
  image size in the reference's proportions (at 224 px: short side 256-320 for training, 224 for testing);
- the class count from the dataset: the weights' head is kept when the count is the same, and replaced by a
  new one when it differs.
What the preset or the command line sets always wins. One line says what was decided; the resolved config is
what config.yaml and every checkpoint record, so a fine-tuned checkpoint loads like any other.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, flatten, load_config, override_values, preset_values
from ..weights.checkpoint import Checkpoint

INHERITED_MODEL = (
    "img_size",
    "patch_size",
    "in_chans",
    "num_frames",
    "embed_dim",
    "depth",
    "num_heads",
    "mlp_ratio",
    "qkv_bias",
    "attention_type",
    "time_embed",
    "layer_norm_eps",
)
INHERITED_DATA = (
    "train_sampling",
    "test_sampling",
    "sampling_rate",
    "target_fps",
    "num_clips",
    "num_crops",
    "train_scale",
    "test_scale",
    "mean",
    "std",
)


def given_keys(preset: str | Path | dict | Config | None, overrides: list[str] | dict | None) -> set[str]:
    """The dotted keys a preset (a name, YAML path or dict; a `Config` sets every key) and overrides set."""
    return set(flatten(preset_values(preset))) | set(override_values(overrides))


def _num_classes(cfg: Config) -> int:
    """The training split's class count (lists and folders are read; no video is decoded)."""
    from ..data import build_dataset

    return len(
        build_dataset(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache=False)), "train").classes
    )


def _inherited(source: Checkpoint, cfg: Config, given: set[str]) -> dict[str, Any]:
    """The dotted keys nobody set, with the values the weights record (see the module docstring)."""
    values = {f"model.{k}": getattr(source.config.model, k) for k in INHERITED_MODEL}
    recorded = INHERITED_DATA if source.source == "ours" else ("mean", "std") if source.source == "hf" else ()
    values |= {f"data.{k}": getattr(source.config.data, k) for k in recorded}
    if "train_scale" not in recorded:  # the reference's proportions: 256-320 and 224 at 224 px
        size = cfg.model.img_size if "model.img_size" in given else values["model.img_size"]
        values |= {"data.train_scale": [round(size * 256 / 224), round(size * 320 / 224)], "data.test_scale": size}
    return {k: v for k, v in values.items() if k not in given}


def _describe(name: str, source: Checkpoint, cfg: Config, given: set[str]) -> str:
    """The one line: what the weights are, what happens to their head, what the file left to assumption."""
    m, had = cfg.model, source.config.model.num_classes
    if source.image and m.attention_type != "space_only":
        head = f"an image ViT inflated into {m.attention_type}, new head for {m.num_classes} classes"
    elif m.num_classes != had:
        head = f"new head for {m.num_classes} classes (the weights' head has {had})"
    else:
        head = f"its head of {had} classes kept as the start (the dataset has as many)"
    line = f"fine-tuning from '{name}' ({source.source}: width {m.embed_dim}, depth {m.depth}, "
    line += f"{m.num_frames} frames at {m.img_size} px): {head}"
    guessed = [k for k in source.guessed if f"model.{k}" not in given]
    if guessed:
        assumed = ", ".join(f"{k}={getattr(m, k)}" for k in guessed)
        line += f"; the file does not record {', '.join(guessed)} (assumed {assumed}: set them if they differ)"
    t = cfg.train
    return line + ("; head only, backbone frozen" if t.head_only else f"; backbone lr x{t.backbone_lr_scale:g}")


def finetune_config(
    preset: str | Path | dict | Config | None, overrides: list[str] | dict | None = None
) -> tuple[Config, str]:
    """`load_config(preset, overrides)`, completed from `model.pretrained` and the data when
    `model.from_pretrained` is true (see the module docstring).

    Args:
        preset: as `load_config` takes it; the keys it sets (a `Config` sets them all) are never replaced.
        overrides: as `load_config` takes them; never replaced either.

    Returns:
        The config, and the one line that says what was taken from where ("" when nothing was).

    Raises:
        ConfigError: `model.from_pretrained` without `model.pretrained`.
    """
    cfg = load_config(preset, overrides)
    if not cfg.model.from_pretrained:
        return cfg, ""
    name = cfg.model.pretrained
    if not name:
        raise ConfigError(
            "model.from_pretrained=true (the finetune preset) starts from trained weights: pass model.pretrained= "
            "a checkpoint path, a zoo name (timesformer-lite download --list) or a Hugging Face hub id"
        )
    from ..weights.load import read_weights

    source = read_weights(name)
    given = given_keys(preset, overrides)
    cfg = load_config(cfg, _inherited(source, cfg, given))
    if "model.num_classes" not in given:
        cfg = load_config(cfg, {"model.num_classes": _num_classes(cfg)})
    return cfg, _describe(name, source, cfg, given)
