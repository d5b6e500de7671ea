"""Toy motions: a built-in video dataset whose classes differ only in the ORDER of their frames.

    timesformer-lite toy-data data/toy_motions --per-class 1000 --frames 8 --size 32

10 classes = 5 pairs: move right/left, move down/up, grow/shrink, rotate ccw/cw (a long thick bar about
the frame centre), fade in/out. An odd class is drawn exactly like its even partner (same recipe, same
parameter distribution) and then reversed in time, so the unordered set of frames has the same
distribution for both members of a pair: a single frame, or a model that averages frames, sits at
chance within a pair, and only temporal modelling separates them.

The recipe of docs/toy_motions.md (lengths in pixels at 32 px, scaled with size/32):
textured background (base colour in [0.25, 0.65]^3, two octaves of bilinearly upsampled Gaussian noise
on 4x4 and 8x8 cells, amplitudes 0.15 and 0.08, random tint), fixed over the clip; a square, disc or
triangle at a random orientation, its colour at least 0.45 (L2) from the background, anti-aliased by a
one-pixel signed-distance ramp; i.i.d. pixel noise sigma 0.04 per frame.

- move: radius 3.0-4.5, speed 1.8-2.6 px/frame (capped so the whole path fits), path inside the frame.
- grow: radius 2.0-3.5 -> 8.0-11.0, linear, fixed random centre.
- rotate: bar half-length 13-15, width 3.5-4.5, 18-26 degrees/frame about the centre +- 1.5 px.
- fade: radius 5-8, opacity linear from 0-0.15 to 0.85-1.0.

Clips are written as H.264 mp4 by a process pool: libx264, yuv420p, 8 fps, one thread per encoder, and every
frame coded alike: intra only (`keyint=1`) at one constant quantiser (qp 27), so no frame is a sharper key frame
and a clip encoded backwards decodes to exactly its frames backwards (PSNR 26.6 dB against the raw frames at every
frame position; `python benchmarks/bench_decode.py --toy` measures it). Every clip has its own generator seeded
by (seed, split, class, index), so the output does not depend on the number of processes. Splits: `per_class`
train clips per class, `max(per_class // 20, 2)` val and test clips per class (1000 -> 1000/50/50). Files: `OUT/{split}/{class}/{index:05d}.mp4`, list
files `OUT/{train,val,test}.txt` (`split/class/00000.mp4 label`), `OUT/classes.txt`, `OUT/toy_meta.json`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from .decode import pyav
from .loader import pool_worker_init

CLASSES = (
    "move_right",
    "move_left",
    "move_down",
    "move_up",
    "grow",
    "shrink",
    "rotate_ccw",
    "rotate_cw",
    "fade_in",
    "fade_out",
)
MOTIONS = ("move_h", "move_v", "grow", "rotate", "fade")  # the even class of each pair
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
RECIPE = "v6"  # v6: every frame intra-coded at one quantiser (v5: crf 23, its first frame a sharper key frame)
FPS = 8
# Every frame an I-frame at one quantiser: a codec with key frames and rate control codes frames by their position
# (under v5's crf 23 the first frame decoded 1.6 dB sharper than the rest), which an order-blind model can read as
# time order. A constant qp also switches off rate control, adaptive quantisation and mb-tree, so a frame's bytes
# depend on that frame alone (ipratio=1: I-frames get qp itself, not qp - 3). qp 27 stays close to v5's size and
# quality (26.6 dB against 26.0 dB, 3.1 kB against 2.6 kB per clip; qp 0, lossless but for 4:2:0 chroma, takes
# 10 kB).
X264_OPTIONS = {"qp": "27", "preset": "veryfast", "x264-params": "keyint=1:ipratio=1"}


def split_sizes(per_class: int) -> dict[str, int]:
    """Clips per class in each split: train `per_class`, val and test `max(per_class // 20, 2)`."""
    held_out = max(per_class // 20, 2)
    return {"train": per_class, "val": held_out, "test": held_out}


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random texture (S, S, 3) in [0, 1] scale, and its base colour (3,)."""
    base = rng.uniform(0.25, 0.65, 3)
    tint = rng.uniform(0.5, 1.0, 3)
    tex = np.zeros((size, size))
    for cells, amp in ((4, 0.15), (8, 0.08)):
        grid = rng.normal(0.0, 1.0, (cells + 1, cells + 1))
        pos = np.linspace(0, cells, size)  # bilinear upsampling of the cell grid to S pixels
        i = np.minimum(pos.astype(int), cells - 1)
        f = pos - i
        rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]  # (S, cells+1)
        tex += amp * (rows[:, i] * (1 - f) + rows[:, i + 1] * f)
    return base + tex[..., None] * tint, base


def _colour(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A shape colour at least 0.45 (L2, [0, 1] scale) away from the background base colour."""
    while True:
        c = rng.uniform(0.0, 1.0, 3)
        if np.linalg.norm(c - base) >= 0.45:
            return c


def _sdf(shape: str, x: np.ndarray, y: np.ndarray, cx, cy, r, angle) -> np.ndarray:
    """Signed distance (pixels, negative inside) of a shape; cx, cy, r, angle broadcast over frames (T, 1, 1)."""
    dx, dy = x - cx, y - cy
    if shape == "disc":
        return np.hypot(dx, dy) - r
    if shape == "triangle":  # equilateral, circumradius r: the max over the three edge half-planes
        normals = angle + np.pi / 3 + 2 * np.pi / 3 * np.arange(3)
        return np.max([dx * np.cos(a) + dy * np.sin(a) for a in np.moveaxis(normals, -1, 0)], axis=0) - r / 2
    return _box(dx, dy, r, r, angle)


def _box(dx: np.ndarray, dy: np.ndarray, half_w, half_h, angle) -> np.ndarray:
    """Signed distance of a rectangle with half extents (half_w, half_h) rotated by `angle`."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = np.abs(dx * c + dy * s) - half_w, np.abs(-dx * s + dy * c) - half_h
    return np.hypot(np.maximum(u, 0), np.maximum(v, 0)) + np.minimum(np.maximum(u, v), 0)


def render_motion(motion: str, rng: np.random.Generator, frames: int = 8, size: int = 32) -> np.ndarray:
    """One clip of the EVEN class of a pair (move right, move down, grow, rotate ccw, fade in).

    Args:
        motion: one of `MOTIONS`.
        rng: the clip's generator; the same state gives the same clip.
        frames: T.
        size: S, frame height = width in pixels.

    Returns:
        uint8 (T, S, S, 3).
    """
    k = size / 32  # the recipe's lengths are for 32 px frames
    t = np.arange(frames, dtype=float)[:, None, None]  # (T, 1, 1)
    y, x = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    bg, base = _background(rng, size)
    colour = _colour(rng, base)
    shape = ("square", "disc", "triangle")[rng.integers(3)]
    angle = rng.uniform(0, 2 * np.pi)
    alpha = 1.0
    if motion in ("move_h", "move_v"):
        r = rng.uniform(3.0, 4.5) * k
        speed = min(rng.uniform(1.8, 2.6) * k, (size - 2 * r) / max(frames - 1, 1))
        start = rng.uniform(r, size - r - speed * (frames - 1))
        across = rng.uniform(r, size - r)
        along = start + speed * t
        cx, cy = (along, across) if motion == "move_h" else (across, along)
        sd = _sdf(shape, x, y, cx, cy, r, angle)
    elif motion == "grow":
        r0, r1 = rng.uniform(2.0, 3.5) * k, rng.uniform(8.0, 11.0) * k
        cx, cy = rng.uniform(r1, size - r1, 2) if size > 2 * r1 else (size / 2, size / 2)
        sd = _sdf(shape, x, y, cx, cy, r0 + (r1 - r0) * t / max(frames - 1, 1), angle)
    elif motion == "rotate":
        half_len, width = rng.uniform(13, 15) * k, rng.uniform(3.5, 4.5) * k
        step = np.deg2rad(rng.uniform(18, 26))
        cx, cy = size / 2 + rng.uniform(-1.5, 1.5, 2) * k
        # image y points down, so a decreasing math angle turns the bar counter-clockwise on screen
        sd = _box(x - cx, y - cy, half_len, width / 2, angle - step * t)
    elif motion == "fade":
        r = rng.uniform(5, 8) * k
        cx, cy = rng.uniform(r, size - r, 2)
        a0, a1 = rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0)
        alpha = a0 + (a1 - a0) * t / max(frames - 1, 1)
        sd = _sdf(shape, x, y, cx, cy, r, angle)
    else:
        raise ValueError(f"motion {motion!r} is not one of {', '.join(MOTIONS)}")
    cover = (np.clip(0.5 - sd, 0.0, 1.0) * alpha)[..., None]  # (T, S, S, 1): one-pixel anti-aliased edge
    video = bg * (1 - cover) + colour * cover + rng.normal(0.0, 0.04, (frames, size, size, 3))
    return np.clip(video * 255 + 0.5, 0, 255).astype(np.uint8)


def make_clip(label: int, rng: np.random.Generator, frames: int = 8, size: int = 32) -> np.ndarray:
    """A clip of class `label`: odd classes are their even partner's recipe reversed in time. uint8 (T, S, S, 3)."""
    clip = render_motion(MOTIONS[label // 2], rng, frames, size)
    return np.ascontiguousarray(clip[::-1]) if label % 2 else clip


def clip_rng(seed: int, split: str, label: int, index: int) -> np.random.Generator:
    """The generator of one clip; independent of generation order and process count."""
    return np.random.default_rng([seed, SPLIT_IDS[split], label, index])


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = FPS, options: dict[str, str] | None = None) -> None:
    """Encode uint8 (T, H, W, 3) frames as H.264 (yuv420p, one thread: deterministic); H and W must be even.

    Args:
        path: the mp4 to write.
        frames: uint8 (T, H, W, 3).
        fps: frame rate of the stream.
        options: libx264 options; `X264_OPTIONS` (every frame intra-coded at qp 27) by default.
    """
    h, w = frames.shape[1:3]
    av = pyav()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options=options or X264_OPTIONS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _write_job(job: tuple[str, str, int, int, int, int, int, int]) -> None:
    out, split, label, start, stop, frames, size, seed = job
    folder = Path(out) / split / CLASSES[label]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, stop):
        write_mp4(folder / f"{i:05d}.mp4", make_clip(label, clip_rng(seed, split, label, i), frames, size))


def generate(
    out_dir: str | Path, *, per_class: int = 1000, frames: int = 8, size: int = 32, seed: int = 0, workers: int = 0
) -> dict[str, int]:
    """Write the toy-motions dataset to `out_dir` (see the module docstring for the layout).

    Args:
        out_dir: destination; created if needed. Existing clips with the same names are overwritten.
        per_class: training clips per class (val/test: `max(per_class // 20, 2)`).
        frames: frames per clip.
        size: frame side in pixels; even (H.264 4:2:0) and at least 16.
        seed: dataset seed; the same seed gives the same decoded frames.
        workers: encoder processes; 0 = all cores.

    Returns:
        clips written per split.
    """
    if size < 16 or size % 2:
        raise ValueError(f"toy size={size} must be even (H.264 4:2:0 needs even sides) and at least 16")
    if frames < 2:
        raise ValueError(f"toy frames={frames} must be at least 2: the classes are defined by frame order")
    if per_class < 1:
        raise ValueError(f"toy per_class={per_class} must be at least 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = split_sizes(per_class)
    chunk = 50
    jobs = [
        (str(out), split, label, s, min(s + chunk, n), frames, size, seed)
        for split, n in sizes.items()
        for label in range(len(CLASSES))
        for s in range(0, n, chunk)
    ]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(jobs) > 1:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(min(workers, len(jobs)), initializer=pool_worker_init, initargs=(os.getpid(),)) as pool:
            pool.map(_write_job, jobs, chunksize=1)
    else:
        for job in jobs:
            _write_job(job)
    for split, n in sizes.items():
        lines = [f"{split}/{CLASSES[c]}/{i:05d}.mp4 {c}\n" for c in range(len(CLASSES)) for i in range(n)]
        (out / f"{split}.txt").write_text("".join(lines))
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    meta = {"recipe": RECIPE, "per_class": per_class, "frames": frames, "size": size, "seed": seed}
    (out / "toy_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return {split: n * len(CLASSES) for split, n in sizes.items()}


GENERATED_FILES = ("train.txt", "val.txt", "test.txt", "classes.txt", "toy_meta.json")


def foreign_files(root: str | Path) -> list[str]:
    """What in `root` `generate` did not write (paths relative to it): anything but the list files, the meta
    file and `{split}/{class}/NNNNN.mp4`."""
    root = Path(root)
    foreign = []
    for entry in sorted(root.iterdir()):
        if entry.name in GENERATED_FILES and entry.is_file() and not entry.is_symlink():
            continue
        if entry.name not in SPLIT_IDS or not entry.is_dir() or entry.is_symlink():
            foreign.append(entry.name)
            continue
        for folder in sorted(entry.iterdir()):
            if folder.name not in CLASSES or not folder.is_dir() or folder.is_symlink():
                foreign.append(f"{entry.name}/{folder.name}")
                continue
            foreign += [
                f"{entry.name}/{folder.name}/{f.name}"
                for f in sorted(folder.iterdir())
                if not (len(f.name) == 9 and f.name[:5].isdigit() and f.name.endswith(".mp4") and f.is_file())
            ]
    return foreign


def _remove_generated(root: Path) -> None:
    """Delete what `generate` wrote into `root` (checked with `foreign_files` first), then `root` itself, which
    is then empty: `rmdir` fails rather than delete a file that appeared in the meantime."""
    for name in GENERATED_FILES:
        (root / name).unlink(missing_ok=True)
    for split in SPLIT_IDS:
        for label in CLASSES:
            folder = root / split / label
            if folder.is_dir():
                for f in folder.glob("[0-9][0-9][0-9][0-9][0-9].mp4"):
                    f.unlink()
                folder.rmdir()
        if (root / split).is_dir():
            (root / split).rmdir()
    root.rmdir()


def _remove_stale_tmp(root: Path) -> None:
    """Temporary folders of generations that were killed (their process is gone)."""
    for tmp in root.parent.glob(f".{root.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def _read_meta(meta: Path) -> dict:
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}


def ensure_toy_data(root: str | Path, *, per_class: int, frames: int, size: int, seed: int) -> bool:
    """Generate the dataset into `root` unless it already holds one made with these settings.

    A root with list files but no `toy_meta.json` is taken as user data and left alone; one whose meta
    differs is regenerated, removing only what an earlier generation wrote. A root that holds anything else
    is refused: the dataset never deletes a file it did not make. Generation goes to a temporary folder that
    is renamed into place, so concurrent callers (DDP ranks) never see half a dataset.

    Returns:
        True if data was generated.

    Raises:
        ValueError: `root` holds files the generator did not write (the message names some).
    """
    root = Path(root)
    want = {"recipe": RECIPE, "per_class": per_class, "frames": frames, "size": size, "seed": seed}
    meta = root / "toy_meta.json"
    if meta.is_file():
        if _read_meta(meta) == want:
            return False
        foreign = foreign_files(root)
        if foreign:
            raise ValueError(
                f"data.root '{root}' holds toy data made with other settings and also files the generator did not "
                f"write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); move them out, or set "
                "data.root to another folder"
            )
        warnings.warn(f"toy data in '{root}' was made with other settings; regenerating with {want}", stacklevel=2)
    elif (root / "train.txt").is_file():
        return False
    elif root.is_dir() and any(root.iterdir()):
        raise ValueError(
            f"data.root '{root}' is not empty and holds no toy data (first: {sorted(p.name for p in root.iterdir())[0]}); "
            "set data.root to a new or empty folder for the toy dataset"
        )
    elif root.exists() and not root.is_dir():
        raise ValueError(f"data.root '{root}' is a file; set data.root to a folder")
    _remove_stale_tmp(root)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, per_class=per_class, frames=frames, size=size, seed=seed)
    if meta.is_file() and _read_meta(meta) == want:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    if root.is_dir():
        _remove_generated(root)
    os.replace(tmp, root)
    return True


def ensure_toy_data_for(d, root: str | Path | None = None) -> bool:
    """`ensure_toy_data` with the settings of a `DataConfig` `d` (`data.toy_*`), into `root` (default: `d.root`)."""
    return ensure_toy_data(
        d.root if root is None else root, per_class=d.toy_per_class, frames=d.toy_frames, size=d.toy_size,
        seed=d.toy_seed,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`timesformer-lite toy-data OUT_DIR [--seed S] [--per-class N] [--frames T] [--size S] [--workers W]`."""
    parser = argparse.ArgumentParser(
        prog="timesformer-lite toy-data",
        description="Generate the toy-motions dataset (10 classes, 5 time-reversed pairs) as H.264 mp4 clips "
        "with PaddleVideo list files.",
    )
    parser.add_argument("out_dir", help="destination folder, e.g. data/toy_motions")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (same seed, same frames)")
    parser.add_argument("--per-class", type=int, default=1000, help="train clips per class; val/test get N//20 (>= 2)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip")
    parser.add_argument("--size", type=int, default=32, help="frame side in pixels (even)")
    parser.add_argument("--workers", type=int, default=0, help="encoder processes (0: all cores)")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    if out.is_dir() and any(out.iterdir()):
        # as `ensure_toy_data`: only an earlier generation (its toy_meta.json says so) may be written over
        theirs = foreign_files(out) if (out / "toy_meta.json").is_file() else sorted(p.name for p in out.iterdir())
        if theirs:
            raise ValueError(
                f"'{out}' holds files the toy generator did not write ({', '.join(theirs[:3])}"
                f"{', ...' if len(theirs) > 3 else ''}), which it would overwrite; give a new or empty folder"
            )
    start = time.perf_counter()
    counts = generate(
        args.out_dir, per_class=args.per_class, frames=args.frames, size=args.size, seed=args.seed, workers=args.workers
    )
    took = time.perf_counter() - start
    total = sum(counts.values())
    print(
        f"toy motions: {total} clips ({counts['train']}/{counts['val']}/{counts['test']} train/val/test), "
        f"{args.frames} frames at {args.size}x{args.size}, seed {args.seed} -> {args.out_dir} "
        f"in {took:.1f} s ({1000 * took / total:.2f} ms/clip)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
