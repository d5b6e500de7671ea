"""Image pretraining in miniature: a ViT trained on toy stills, saved as a timm ViT that inflates into video.

    result, vit = pretrain_vit("toy", ["train.epochs=10"], stills="data/toy_stills", out="runs/transfer/vit.safetensors")
    run("toy", [f"model.pretrained={vit}"])   # inflated by the loader's ImageNet-ViT path, then fine-tuned

The paper's models start from an ImageNet ViT. Here the image task is toy stills (`data.toy_stills`) and the
ViT is the one-frame, space-only TimeSformer, whose parameters are exactly a timm ViT's (`patch_embed`,
`cls_token`, `pos_embed`, `blocks.i.{norm1, attn, norm2, mlp}`, `norm`, `head`: built in notebooks/10). It
trains with the one trainer, its best checkpoint is written as a plain timm state dict, and `model.pretrained=`
that file goes through `weights.vit.inflate` like any ImageNet checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from ..config import Config, load_config
from ..data.toy_stills import CLASSES, ensure_toy_stills
from ..weights.checkpoint import read_trainer_checkpoint
from ..weights.io import WeightsError, atomic_write
from .trainer import RunResult, run


def stills_overrides(root: str | Path, size: int) -> list[str]:
    """What turns a video preset into image pretraining on the `size`-pixel stills in `root`: one frame, no time
    axis, and no augmentation that moves a shape into another quarter (a flip, a crop of a larger resize)."""
    return [
        "data.dataset=list",
        f"data.root={root}",
        "data.hflip=false",
        f"data.train_scale=[{size}, {size}]",
        f"data.test_scale={size}",
        "model.num_frames=1",
        "model.attention_type=space_only",
        f"model.num_classes={len(CLASSES)}",
    ]


def save_timm_vit(checkpoint: str | Path, path: str | Path) -> Path:
    """Write the weights of a trainer checkpoint of a one-frame space-only model as a timm ViT `.safetensors`.

    Args:
        checkpoint: a trainer `.pt` (e.g. the `best.pt` of `pretrain_vit`'s run).
        path: the file to write (atomically); its tensors carry timm's names and no metadata.

    Raises:
        WeightsError: the checkpoint is a video model (it has a time axis), not an image ViT.
    """
    ckpt = read_trainer_checkpoint(checkpoint)
    model = load_config(ckpt["config"]).model
    if model.attention_type != "space_only" or model.num_frames != 1 or model.time_embed:
        raise WeightsError(
            f"'{checkpoint}' is a {model.attention_type} model of {model.num_frames} frames; a ViT is a one-frame "
            "space_only model without a time embedding (train it with stills_overrides)"
        )
    state = {k: v.contiguous() for k, v in ckpt["model"].items()}
    return atomic_write(Path(path), lambda tmp: save_file(state, tmp))


def pretrain_vit(
    preset: str | Path | Config,
    overrides: list[str] | None = None,
    *,
    stills: str | Path = "data/toy_stills",
    per_class: int = 500,
    out: str | Path,
) -> tuple[RunResult, Path]:
    """Pretrain the preset's model as a ViT on toy stills (generated on first use) and save it as a timm ViT.

    Args:
        preset: the video preset whose width, depth, heads, image size and recipe the ViT takes.
        overrides: key=value strings applied after the image task's (e.g. train.epochs, train.name).
        stills: where the stills are (generated there with `per_class` training stills per class if absent).
        per_class: training stills per class (val and test: `per_class // 20`, at least 2).
        out: the timm ViT `.safetensors` to write.

    Returns:
        The pretraining run and the path of the ViT file.
    """
    size = load_config(preset, overrides).data.toy_size
    ensure_toy_stills(stills, per_class=per_class, size=size)
    result = run(preset, [*stills_overrides(stills, size), *(overrides or [])])
    return result, save_timm_vit(result.best_checkpoint, out)
