"""Top-k labels for your own videos: one call on a file or a folder, with the checkpoint's own test protocol.

    preds = tl.predict("clip.mp4", "runs/toy/best.pt", top_k=5)   # [(label, probability), ...]
    preds = tl.predict("my_videos/", model)                       # {"my_videos/a.mp4": [(label, p), ...], ...}

Each video is cut into views exactly as the test split of a dataset cuts it (`data.load_views`): the
checkpoint's `run_config.data` gives the frame sampling (test_sampling, sampling_rate, target_fps), the
views (num_clips temporal clips x num_crops spatial crops, clip-major), the short side (test_scale) and the
normalisation (mean, std). The model scores every view and the scores are averaged as in `evaluate`:
"logits" (the official code, PaddleVideo) averages raw logits and the probabilities are their softmax;
"softmax" (mmaction2) averages the views' probabilities. Either way a video's probabilities sum to 1.

A model that records no test protocol (built in memory, or loaded from a Hugging Face, official, PaddleVideo
or ViT file) gets the reference one: 8x32-style `linspace` sampling over the whole video, short side =
`img_size`, 1 clip x 3 UniformCrops, and its recorded mean/std (a Hugging Face folder's
preprocessor_config.json) or else the reference 0.45 / 0.225. Labels are `model.classes`, else "class_<k>".

`explain=OUT` also writes the attention rollout of each video's centre view (`explain.py`). The command line,
`timesformer-lite predict`, is `predict_cli.py`; its table and JSON lines are `predict_format.py`.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import Config, DataConfig
from .data.annotations import VIDEO_EXTENSIONS
from .data.clip import load_views
from .data.decode import VideoReadError
from .explain import explain_dirs, explain_video
from .fuse import fuse
from .utils import average_views, pick_device

AVERAGES = ("logits", "softmax")


@dataclass
class Prediction:
    """What one video got.

    Args:
        path: the video.
        top_k: `(label, probability)` pairs, most probable first.
        probabilities: (classes,) the video's class probabilities (sum to 1).
        scores: (classes,) the averaged view scores: logits ("logits") or probabilities ("softmax").
        views: (clips, crops) that were averaged.
        frames: the frame indices of each temporal clip.
        explained: the files `explain` wrote (PNG, GIF), if any.
    """

    path: Path
    top_k: list[tuple[str, float]]
    probabilities: Tensor
    scores: Tensor
    views: tuple[int, int]
    frames: list[list[int]]
    explained: list[Path] = field(default_factory=list)


def parse_views(views: str | tuple[int, int]) -> tuple[int, int]:
    """ "CxS" (e.g. "2x3") or (C, S) -> (clips, crops); crops must be 1 (centre) or 3 (UniformCrop)."""
    if isinstance(views, str):
        parts = views.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"views={views!r} must be CLIPSxCROPS, e.g. 1x3 or 2x3")
        views = (int(parts[0]), int(parts[1]))
    clips, crops = views
    if clips < 1 or crops not in (1, 3):
        raise ValueError(f"views={clips}x{crops}: need at least 1 clip, and 1 (centre) or 3 (UniformCrop) crops")
    return clips, crops


def _records_protocol(model: nn.Module) -> bool:
    """True when `model.run_config.data` is a real test protocol, i.e. the model came from one of our checkpoints
    (foreign formats record at most mean/std; `load_report.what` ends with the format read)."""
    report = getattr(model, "load_report", None)
    return getattr(model, "run_config", None) is not None and (report is None or report.what.endswith("(ours)"))


def inference_config(model: nn.Module, views: str | tuple[int, int] | None = None) -> Config:
    """The config whose test protocol `predict` applies to `model` (see the module docstring).

    Args:
        model: a `TimeSformer`, with `run_config` when it was loaded by `load_pretrained`.
        views: "CxS" / (clips, crops) to override the protocol's views.
    """
    run_config = getattr(model, "run_config", None)
    if _records_protocol(model):
        data = run_config.data
    else:
        ref = DataConfig()  # its mean/std are the reference 0.45 / 0.225
        data = DataConfig(
            test_sampling="linspace",
            num_clips=1,
            num_crops=3,
            test_scale=model.cfg.img_size,
            mean=list(run_config.data.mean if run_config is not None else ref.mean),
            std=list(run_config.data.std if run_config is not None else ref.std),
        )
    if views is not None:
        clips, crops = parse_views(views)
        data = dataclasses.replace(data, num_clips=clips, num_crops=crops)
    return Config(model=model.cfg, data=data)


def class_names(model: nn.Module) -> list[str]:
    """`model.classes`, else "class_0", "class_1", ..."""
    classes = getattr(model, "classes", None)
    return list(classes) if classes else [f"class_{k}" for k in range(model.cfg.num_classes)]


def find_videos(folder: str | Path) -> list[Path]:
    """Every video file under `folder` (recursively, by extension: mp4, avi, mkv, webm, mov, ...), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


@torch.no_grad()
def predict_video(
    path: str | Path,
    model: nn.Module,
    cfg: Config,
    top_k: int = 5,
    average: str = "logits",
    explain: str | Path | None = None,
    fast: nn.Module | None = None,
) -> Prediction:
    """Score one video under `cfg`'s test protocol (see `inference_config`); the model must be in eval mode.

    Args:
        path: the video file.
        model: the model, on the device to run on.
        cfg: the protocol, from `inference_config(model, views)`.
        top_k: labels to return (at most the number of classes).
        average: "logits" or "softmax" (see the module docstring).
        explain: a folder for the attention-rollout PNG and GIF of the centre view; None for none.
        fast: `tl.fuse(model)` to score the views with (the same logits, faster); None scores with `model`.
            The explanation's attention maps always come from `model`.

    Raises:
        VideoReadError: the file cannot be read (the message names it, the cause and the fix).
    """
    if average not in AVERAGES:
        raise ValueError(f"average={average!r} is not one of {', '.join(AVERAGES)}")
    views = load_views(path, cfg)
    logits = (model if fast is None else fast)(views.video.to(next(model.parameters()).device)).float()  # (V, classes)
    scores = average_views(logits[None], average)[0].cpu()  # (classes,)
    probs = scores.softmax(-1) if average == "logits" else scores
    classes = class_names(model)
    top = probs.topk(min(top_k, len(classes)))
    pred = Prediction(
        Path(path),
        [(classes[k], float(p)) for p, k in zip(top.values.tolist(), top.indices.tolist())],
        probs,
        scores,
        (cfg.data.num_clips, cfg.data.num_crops),
        views.frames,
    )
    if explain is not None:
        pred.explained = explain_video(pred, views, model, cfg, Path(explain))
    return pred


def load_model(
    model_or_checkpoint: nn.Module | str | Path, device: str | None = None, setting: str = "device={!r}"
) -> nn.Module:
    """A model as given, or loaded from any checkpoint `load_pretrained` reads; moved to `device` when given.

    Args:
        model_or_checkpoint: a `TimeSformer` or a checkpoint path.
        device: "auto" (a GPU when there is one), "cpu", "cuda", ...; None keeps a model where it is and
            loads a checkpoint with "auto".
        setting: how the caller wrote the device, for the error when it is not here (see `pick_device`).

    Raises:
        ValueError: the device is not on this machine (before any checkpoint is read).
    """
    from .weights import load_pretrained

    if isinstance(model_or_checkpoint, nn.Module):
        model = model_or_checkpoint
        return model.to(pick_device(device, setting=setting)) if device is not None else model
    target = pick_device(device or "auto", setting=setting)
    return load_pretrained(model_or_checkpoint).to(target)


def predict_each(
    paths: list[Path], model: nn.Module, cfg: Config, top_k: int, average: str, explain: str | Path | None
) -> Iterator[tuple[Path, Prediction | VideoReadError]]:
    """Each path with its prediction, or with the error that made it unreadable; restores the model's mode."""
    was_training = model.training
    model.eval()
    folders = explain_dirs(paths, explain) if explain is not None else {}
    fast = fuse(model)  # once for all the videos
    try:
        for path in paths:
            try:
                yield path, predict_video(path, model, cfg, top_k, average, folders.get(path), fast)
            except VideoReadError as e:
                yield path, e
    finally:
        model.train(was_training)


def predict(
    video_or_folder: str | Path,
    model_or_checkpoint: nn.Module | str | Path,
    top_k: int = 5,
    views: str | tuple[int, int] | None = None,
    average: str = "logits",
    explain: str | Path | None = None,
    device: str | None = None,
) -> list[tuple[str, float]] | dict[str, list[tuple[str, float]]]:
    """Top-k `(label, probability)` for a video, or for every video in a folder.

    Args:
        video_or_folder: a video file, or a folder searched recursively for video files.
        model_or_checkpoint: a `TimeSformer`, or any checkpoint `load_pretrained` reads.
        top_k: labels per video, most probable first (at most the number of classes).
        views: "CxS" (e.g. "1x1", "2x3") overrides the checkpoint's clips x crops.
        average: how the views' scores combine: "logits" (default, the official rule) or "softmax".
        explain: a folder for an attention-rollout PNG and GIF per video (see the module docstring).
        device: where to run (see `load_model`).

    Returns:
        For a file: `[(label, probability), ...]`. For a folder: `{path: [(label, probability), ...]}` with
        the paths as found under the folder (`str`), sorted; unreadable files are left out with a warning.

    Raises:
        VideoReadError: the file (not a folder's file) cannot be read.
        FileNotFoundError: the path does not exist, or a folder has no video files.
    """
    target = Path(video_or_folder)
    if not target.exists():
        raise FileNotFoundError(f"'{target}' does not exist; pass a video file or a folder of videos")
    model = load_model(model_or_checkpoint, device)
    cfg = inference_config(model, views)
    if target.is_file():
        ((_, result),) = predict_each([target], model, cfg, top_k, average, explain)
        if isinstance(result, VideoReadError):
            raise result
        return result.top_k
    paths = find_videos(target)
    if not paths:
        raise FileNotFoundError(f"folder '{target}' has no video files ({', '.join(VIDEO_EXTENSIONS)})")
    out = {}
    for path, result in predict_each(paths, model, cfg, top_k, average, explain):
        if isinstance(result, VideoReadError):
            warnings.warn(f"skipping {result}", RuntimeWarning, stacklevel=2)
        else:
            out[str(path)] = result.top_k
    return out
