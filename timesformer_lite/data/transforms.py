"""Spatial transforms as tensor ops: uint8 frames (T, H, W, C) in, normalised float views (V, T, C, H, W) out.

No torchvision (it does not install cleanly beside the CPU torch used here). The reference protocol:

- train: short side resized to a random size in `train_scale`, random `crop_size` crop, horizontal flip
  with probability 0.5 (off for direction-sensitive data: toy motions, SSv2);
- val: short side `test_scale`, centre crop (one view);
- test: short side `test_scale`, centre crop or UniformCrop (3 crops along the long side).

Resizing is bilinear with `align_corners=False` and no antialiasing, like the official code. The official
code normalises before resizing; both steps are linear per channel, so our order (resize, crop, normalise)
gives the same numbers up to float rounding and normalises only the cropped pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


def to_float(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, C) -> float32 (T, C, H, W) in [0, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 frames (T, H, W, C), got {x.dtype} {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def short_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(H, W) after scaling the short side to `size`, the long side floored (official rule).

    Example: (256, 340) with size 224 -> (224, 297).
    """
    if height <= width:
        return size, max(size, math.floor(width * size / height))
    return max(size, math.floor(height * size / width)), size


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (T, C, H, W) so that min(H, W) == size; a no-op when it already is."""
    h, w = x.shape[-2:]
    new = short_side_size(h, w, size)
    if new == (h, w):
        return x
    return F.interpolate(x, size=new, mode="bilinear", align_corners=False, antialias=False)


# a clip is made float and resized this many bytes of float frames at a time: the float copy of a whole clip of
# large frames (12 bytes a pixel: 800 MB for 8 frames of 4K) never exists. Chunks give the same numbers, bit for
# bit, since each frame is interpolated on its own either way.
FLOAT_CHUNK_BYTES = 64 << 20


def resized_float(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """`resize_short_side(to_float(frames), size)`: uint8 (T, H, W, C) -> float (T, C, H', W'), a few frames at a
    time (see `FLOAT_CHUNK_BYTES`)."""
    x = torch.as_tensor(frames)
    if x.ndim != 4 or 4 * x.numel() <= FLOAT_CHUNK_BYTES:
        return resize_short_side(to_float(x), size)
    step = max(1, FLOAT_CHUNK_BYTES * len(x) // (4 * x.numel()))  # frames per chunk
    return torch.cat([resize_short_side(to_float(x[i : i + step]), size) for i in range(0, len(x), step)])


def crop(x: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """The `size` x `size` window of (T, C, H, W) at (top, left)."""
    h, w = x.shape[-2:]
    if not (0 <= top <= h - size and 0 <= left <= w - size):
        raise ValueError(f"crop {size}x{size} at ({top}, {left}) does not fit a {h}x{w} frame")
    return x[..., top : top + size, left : left + size]


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre `size` crop; an odd margin puts the extra pixel before the crop (official `ceil` rule)."""
    h, w = x.shape[-2:]
    return crop(x, math.ceil((h - size) / 2), math.ceil((w - size) / 2), size)


def random_crop(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A `size` crop at a uniformly random position (same position for every frame)."""
    h, w = x.shape[-2:]
    return crop(x, int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)), size)


def uniform_crops(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """UniformCrop: three `size` crops along the long side, in the order start, centre, end.

    Landscape (and square) frames give left, centre, right; portrait frames give top, centre, bottom.
    (The official code uses this order; PaddleVideo's is left, right, centre: scores are averaged, so
    the order does not change results.)
    """
    h, w = x.shape[-2:]
    top, left = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
    if h > w:
        return [crop(x, t, left, size) for t in (0, top, h - size)]
    return [crop(x, top, l, size) for l in (0, left, w - size)]


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror (..., H, W) left-right."""
    return x.flip(-1)


def normalize(x: torch.Tensor, mean: list[float] | torch.Tensor, std: list[float] | torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel of (..., C, H, W); mean and std are on the [0, 1] scale."""
    m = torch.as_tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - m).div_(s)


@dataclass
class ClipTransform:
    """The whole spatial pipeline for one clip; call it on uint8 (T, H, W, C) frames.

    Args:
        crop_size: output H = W (the model's `img_size`).
        train: random scale, random crop and optional flip; otherwise fixed scale and centre/uniform crops.
        scale: short side range (lo, hi) for training (a random integer in it, both ends included);
            for eval, lo is the short side. The short side is never made smaller than `crop_size`.
        num_crops: eval only: 1 (centre crop) or 3 (UniformCrop).
        hflip: training only: flip with probability 0.5.
        mean, std: normalisation on the [0, 1] scale (reference: 0.45 / 0.225).

    Returns (from `__call__`): float views (V, T, C, H, W), V = 1 in training and `num_crops` in eval.
    """

    crop_size: int
    train: bool
    scale: tuple[int, int] = (256, 320)
    num_crops: int = 1
    hflip: bool = True
    mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])
    std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])

    def __post_init__(self) -> None:
        if self.num_crops not in (1, 3):
            raise ValueError(f"num_crops={self.num_crops} must be 1 (centre crop) or 3 (UniformCrop)")
        if len(self.scale) != 2 or self.scale[0] > self.scale[1]:
            raise ValueError(f"scale={list(self.scale)} must be [low, high] with low <= high")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean={self.mean} and std={self.std} need one value per RGB channel")
        # made once: building them on every call was a quarter of a cached toy clip's loading time
        self._mean = torch.tensor(self.mean, dtype=torch.float32)
        self._std = torch.tensor(self.std, dtype=torch.float32)

    def __call__(self, frames: np.ndarray | torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        if self.train:
            if rng is None:
                raise ValueError("a training transform needs an rng (np.random.Generator)")
            short = int(rng.integers(self.scale[0], self.scale[1] + 1))
            x = random_crop(resized_float(frames, max(short, self.crop_size)), self.crop_size, rng)  # (T, C, S, S)
            if self.hflip and rng.random() < 0.5:
                x = hflip(x)
            views = [x]
        else:
            x = resized_float(frames, max(self.scale[0], self.crop_size))  # (T, C, H', W')
            views = [center_crop(x, self.crop_size)] if self.num_crops == 1 else uniform_crops(x, self.crop_size)
        x = torch.stack(views) if len(views) > 1 else views[0][None]
        return normalize(x, self._mean, self._std)  # (V, T, C, H, W)
