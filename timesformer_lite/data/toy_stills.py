"""Toy stills: an image task drawn like toy-motion frames, to pretrain a ViT before it sees video (issue 21).

    ensure_toy_stills("data/toy_stills", per_class=500)   # then train with data.dataset=list, num_frames=1

A still is one frame drawn the way toy motions draw theirs (`timesformer_lite.data.toy`: the textured
background, a square, disc or triangle at a random orientation with a colour far from the background, the
one-pixel anti-aliased edge, pixel noise) with the shape at rest, and stored as a one-frame clip with the same
codec settings as the clips. Its label is what the generator drew: the shape and the quarter of the frame its
centre lies in, 3 x 4 = 12 classes. It is not the video task: nothing in a still moves, so no label names a
motion; but solving it means finding a shape on the background and saying where it is, which every frame of a
motion asks too. The stills use their own seeds (`SPLIT_SEEDS`), never those of the toy clips.

Files: `OUT/{split}/{class}/{index:05d}.mp4`, `OUT/{train,val,test}.txt`, `OUT/classes.txt`,
`OUT/stills_meta.json`; the list files are PaddleVideo's, read by `data.dataset=list`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .annotations import write_classes, write_list
from .toy import RECIPE, _background, _colour, _read_meta, _remove_stale_tmp, _sdf, split_sizes, write_mp4

SHAPES = ("square", "disc", "triangle")
QUARTERS = ("top_left", "top_right", "bottom_left", "bottom_right")
CLASSES = tuple(f"{shape}_{q}" for shape in SHAPES for q in QUARTERS)
SPLIT_SEEDS = {"train": 10, "val": 11, "test": 12}  # apart from toy motions' split ids (0, 1, 2)
META = "stills_meta.json"


def still_geometry(label: int, rng: np.random.Generator, size: int = 32) -> tuple[str, float, float, float, float]:
    """(shape, cx, cy, r, angle) of a still of class `label`: the centre (pixels) in the label's quarter, the
    whole shape (circumradius r, toy motions' 3-6 px at 32 px, scaled with size) inside the frame."""
    shape, quarter = divmod(label, len(QUARTERS))
    r = rng.uniform(3.0, 6.0) * size / 32
    half = size / 2
    cx = min(rng.uniform(r, half) + half * (quarter % 2), size - r)
    cy = min(rng.uniform(r, half) + half * (quarter // 2), size - r)
    return SHAPES[shape], cx, cy, r, rng.uniform(0, 2 * np.pi)


def render_still(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One still of class `label` on toy motions' background, with their edge and pixel noise: uint8 (S, S, 3)."""
    y, x = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    bg, base = _background(rng, size)
    colour = _colour(rng, base)
    shape, cx, cy, r, angle = still_geometry(label, rng, size)
    cover = np.clip(0.5 - _sdf(shape, x, y, cx, cy, r, angle), 0.0, 1.0)[..., None]  # one-pixel anti-aliased edge
    image = bg * (1 - cover) + colour * cover + rng.normal(0.0, 0.04, (size, size, 3))
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def generate_stills(out: str | Path, *, per_class: int, size: int = 32, seed: int = 0) -> dict[str, int]:
    """Write the stills (one-frame mp4 clips) and their list files into `out`; returns stills per split."""
    out = Path(out)
    sizes = split_sizes(per_class)
    for split, n in sizes.items():
        items = []
        for label, name in enumerate(CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, SPLIT_SEEDS[split], label, i])
                write_mp4(folder / f"{i:05d}.mp4", render_still(label, rng, size)[None])
                items.append((f"{split}/{name}/{i:05d}.mp4", label))
        write_list(out / f"{split}.txt", items)
    write_classes(out / "classes.txt", list(CLASSES))
    return {split: n * len(CLASSES) for split, n in sizes.items()}


def ensure_toy_stills(root: str | Path, *, per_class: int, size: int = 32, seed: int = 0) -> bool:
    """Generate the stills into `root` unless it holds them already with these settings; True if generated.

    Generation goes to a temporary folder renamed into place. A `root` that exists with other settings or
    other files is refused (nothing is deleted): choose another root or remove that folder.
    """
    root = Path(root)
    want = {"recipe": RECIPE, "per_class": per_class, "size": size, "seed": seed, "classes": len(CLASSES)}
    meta = root / META
    if meta.is_file() and _read_meta(meta) == want:
        return False
    if root.exists():
        raise ValueError(
            f"'{root}' exists but holds no toy stills made with {want}; remove it or choose another folder"
        )
    _remove_stale_tmp(root)  # as `ensure_toy_data`: a killed generation's folder, a concurrent caller's finish
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    generate_stills(tmp, per_class=per_class, size=size, seed=seed)
    (tmp / META).write_text(json.dumps(want, indent=1) + "\n")
    if meta.is_file() and _read_meta(meta) == want:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    os.replace(tmp, root)
    return True
