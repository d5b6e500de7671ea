"""One video -> its views: the sampling, decoding and transform steps that datasets and prediction share.

    views = load_views("clip.mp4", cfg)    # the config's test views, no dataset needed
    views.video.shape                      # (V, T, C, H, W), V = num_clips x num_crops, clip-major
    views.frames                           # the frame indices of each temporal clip

`VideoDataset` builds on the same three functions (`sample_clips`, `views_from_frames`, `clip_transform`),
so a video predicted on its own gets exactly the tensor the test split of a dataset would give it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..config import Config
from .decode import read_frames, video_info
from .sampling import sample_indices
from .transforms import ClipTransform


class Views(NamedTuple):
    """The views of one video.

    Args:
        video: (V, T, C, H, W) float, normalised; clip-major (clip 0 crop 0, clip 0 crop 1, ..., clip 1 crop 0).
        frames: for each temporal clip, the T frame indices it was decoded from.
    """

    video: torch.Tensor
    frames: list[list[int]]


def clip_transform(cfg: Config, split: str) -> ClipTransform:
    """The spatial pipeline of one split: random scale/crop/flip for "train", centre crop for "val",
    `data.num_crops` test crops at short side `data.test_scale` for "test"."""
    d = cfg.data
    train = split == "train"
    return ClipTransform(
        crop_size=cfg.model.img_size,
        train=train,
        scale=(d.train_scale[0], d.train_scale[-1]) if train else (d.test_scale, d.test_scale),
        num_crops=d.num_crops if split == "test" else 1,
        hflip=d.hflip,
        mean=d.mean,
        std=d.std,
    )


def sample_clips(
    sampling: str,
    n: int,
    num_frames: int,
    fps: float,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    num_clips: int = 1,
    sampling_rate: int = 32,
    target_fps: float = 30.0,
) -> list[list[int]]:
    """The frame indices of each of `num_clips` temporal clips of a video of `n` frames at `fps`.

    Args:
        sampling: "segment", "linspace" or "dense" (see `timesformer_lite.data.sampling`).
        n: frames in the video.
        num_frames: T.
        fps: the video's frame rate (dense sampling only).
        train: the random training form, or the deterministic test form.
        rng: generator for the training form.
        num_clips: temporal views (test).
        sampling_rate, target_fps: dense sampling parameters.
    """
    return [
        sample_indices(
            sampling,
            n,
            num_frames,
            train=train,
            rng=rng,
            clip_idx=k,
            num_clips=num_clips,
            sampling_rate=sampling_rate,
            fps=fps,
            target_fps=target_fps,
        )
        for k in range(num_clips)
    ]


def views_from_frames(
    frames: np.ndarray, num_frames: int, transform: ClipTransform, rng: np.random.Generator | None = None
) -> torch.Tensor:
    """Decoded clips, uint8 (K*T, H, W, C) with clip k at rows k*T..(k+1)*T, -> views (K*crops, T, C, H, W)."""
    clips = len(frames) // num_frames
    views = [transform(frames[k * num_frames : (k + 1) * num_frames], rng) for k in range(clips)]
    return torch.cat(views) if len(views) > 1 else views[0]  # (V, T, C, H, W), clip-major


def load_views(path: str | Path, cfg: Config) -> Views:
    """The test views of one video file under `cfg`, as the "test" split of a dataset would make them.

    Uses `cfg.model.num_frames`, `cfg.model.img_size` and `cfg.data`'s test_sampling, sampling_rate,
    target_fps, num_clips, num_crops, test_scale, mean, std and backend.

    Args:
        path: a video file.
        cfg: the config whose test protocol to apply (e.g. a checkpoint's `model.run_config`).

    Raises:
        VideoReadError: the file cannot be read (the message names it and the fix).
    """
    d = cfg.data
    info = video_info(path)
    T = cfg.model.num_frames
    clips = sample_clips(
        d.test_sampling,
        info.num_frames,
        T,
        info.fps,
        train=False,
        num_clips=d.num_clips,
        sampling_rate=d.sampling_rate,
        target_fps=d.target_fps,
    )
    frames = read_frames(path, [i for c in clips for i in c], d.backend, info=info)  # (K*T, H, W, C)
    return Views(views_from_frames(frames, T, clip_transform(cfg, "test")), clips)
