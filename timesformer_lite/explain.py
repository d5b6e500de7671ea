"""Where the model looked in a video `predict` scored: the attention rollout of its centre view, as a PNG (one
panel per frame) and a GIF (the frames in time).

`OUT/<file name>.png` and `OUT/<file name>.gif` per video; when two videos of one call share a file name, each
goes under its path below their common folder instead (`a/x.mp4` and `b/x.mp4`: `OUT/a/x.mp4.png` and
`OUT/b/x.mp4.png`), so no explanation overwrites another.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .config import Config
from .data.clip import Views

if TYPE_CHECKING:
    from .predict import Prediction


def explain_dirs(paths: list[Path], out_dir: str | Path) -> dict[Path, Path]:
    """The folder each video's explanation goes to: `out_dir`, or, for videos sharing a file name, `out_dir`
    plus the video's folder below the common folder of all of them (see the module docstring)."""
    out_dir = Path(out_dir)
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return {p: out_dir for p in paths}
    folders = [p.resolve().parent for p in paths]
    common = Path(os.path.commonpath(folders))
    return {p: out_dir / folder.relative_to(common) for p, folder in zip(paths, folders)}


@torch.no_grad()
def explain_video(pred: Prediction, views: Views, model: nn.Module, cfg: Config, out_dir: Path) -> list[Path]:
    """Attention rollout of the centre view (middle clip, middle crop) over its frames: a PNG and a GIF.

    Args:
        pred: the video's prediction (for the title and the file names).
        views: its views, as `load_views` made them.
        model: the model that predicted it.
        cfg: the protocol that made the views.
        out_dir: where `<file name>.png` and `<file name>.gif` go (created if needed).
    """
    # matplotlib is imported here, not at the top, so that `import timesformer_lite` stays light
    from .viz import attention_rollout, overlay_figure, write_animation

    clips, crops = pred.views
    c, s = clips // 2, crops // 2
    view = views.video[c * crops + s]  # (T, C, H, W)
    _, maps = model(view[None].to(next(model.parameters()).device), return_attention=True)
    relevance = attention_rollout(maps)[0].cpu()  # (T, h, w)
    mean, std = cfg.data.mean, cfg.data.std
    label, p = pred.top_k[0]
    title = f"{pred.path.name}: {label} ({p:.1%}); attention rollout, clip {c + 1}/{clips}, crop {s + 1}/{crops}"
    labels = [f"frame {i}" for i in views.frames[c]]
    out_dir.mkdir(parents=True, exist_ok=True)
    png, gif = out_dir / f"{pred.path.name}.png", out_dir / f"{pred.path.name}.gif"
    overlay_figure(view, relevance, mean, std, title=title, labels=labels).savefig(png, dpi=100)
    write_animation(gif, view, relevance, mean=mean, std=std)
    return [png, gif]
