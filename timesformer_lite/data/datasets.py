"""`VideoDataset` (files + labels -> sampled, transformed clips) and `build_dataset(cfg, split)`.

    ds = build_dataset(load_config("toy"), "train")
    item = ds[0]        # {"video": (T, C, H, W) float, "label": int, "index": 0}, or None if unreadable

Splits: "train" = training sampling + random augmentation; "val" = one deterministic clip, centre crop
(fast, used every epoch); "test" = `num_clips x num_crops` views stacked as (V, T, C, H, W), clip-major
(clip 0 crop 0, clip 0 crop 1, ...). A video that cannot be read returns None after a warning and is
counted in `num_skipped` (per process: with DataLoader workers, the `skipped` field of each batch
carries the count back to the trainer).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DATASETS, Config
from .annotations import (
    AnnotationError,
    Items,
    hmdb51_split,
    kinetics_annotations,
    kinetics_split,
    read_classes,
    read_csv_list,
    read_list,
    scan_folder,
    ucf101_split,
)
from .clip import clip_transform, sample_clips, views_from_frames
from .decode import VideoReadError, read_frames, video_info
from .loader import pool_worker_init
from .sampling import SAMPLINGS
from .transforms import ClipTransform

SPLITS = ("train", "val", "test")


class VideoDataset(Dataset):
    """Videos on disk with integer labels, decoded and transformed on access.

    Args:
        root: folder the item paths are relative to.
        items: `(relative_path, label)` pairs.
        classes: class names in label order.
        num_frames: T, frames per clip.
        transform: the spatial pipeline (`ClipTransform`); its `train` flag picks random augmentation.
        sampling: "segment", "linspace" or "dense" (see `timesformer_lite.data.sampling`).
        num_clips: temporal views per video (evaluation only).
        multi_view: return (V, T, C, H, W) instead of (T, C, H, W) (the "test" split).
        sampling_rate, target_fps: dense sampling parameters.
        backend: "auto", "decord" or "pyav".
        seed: seeds the sampling/augmentation generator; DataLoader workers reseed it (see `build_loader`).
    """

    def __init__(
        self,
        root: str | Path,
        items: Items,
        classes: list[str],
        *,
        num_frames: int,
        transform: ClipTransform,
        sampling: str = "segment",
        num_clips: int = 1,
        multi_view: bool = False,
        sampling_rate: int = 32,
        target_fps: float = 30.0,
        backend: str = "auto",
        seed: int = 0,
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling {sampling!r} is not one of {', '.join(SAMPLINGS)}")
        if transform.train and (num_clips != 1 or multi_view):
            raise ValueError("training clips are single views: use num_clips=1 and multi_view=False")
        self.root = Path(root)
        self.items = list(items)
        self.classes = list(classes)
        self.num_frames = num_frames
        self.transform = transform
        self.sampling = sampling
        self.num_clips = num_clips
        self.multi_view = multi_view
        self.sampling_rate = sampling_rate
        self.target_fps = target_fps
        self.backend = backend
        self.rng = np.random.default_rng(seed)
        self.num_skipped = 0
        self.cache: list[tuple[np.ndarray, float] | str] | None = None  # see `preload`

    @property
    def labels(self) -> list[int]:
        return [label for _, label in self.items]

    @property
    def train(self) -> bool:
        return self.transform.train

    def __len__(self) -> int:
        return len(self.items)

    def path(self, index: int) -> Path:
        return self.root / self.items[index][0]

    def reseed(self, seed: int) -> None:
        """Restart the sampling/augmentation generator (called per DataLoader worker)."""
        self.rng = np.random.default_rng(seed)

    def preload(self, workers: int = 2) -> None:
        """Decode every video once and keep all its frames in memory (small datasets such as toy motions).

        Later epochs only sample and transform, which on a CPU is many times faster than decoding again.
        Decoding runs in `workers` processes; an unreadable video is remembered and skipped (counted) on use.
        Videos decoded by an earlier dataset of this process are taken from `DECODED` while their file is
        unchanged (see `DecodedVideos`), so the runs of a notebook or of benchmarks/table1.py decode the toy
        set once.
        """
        jobs = [(str(self.path(i)), self.backend) for i in range(len(self))]
        keys = [DECODED.key(*job) for job in jobs]
        todo = {job: key for job, key in zip(jobs, keys) if key not in DECODED}
        if workers > 1 and len(todo) > 64:
            pool = ProcessPoolExecutor(workers, initializer=pool_worker_init, initargs=(os.getpid(),))
            try:
                decoded = dict(zip(todo, pool.map(_decode_all, todo, chunksize=64)))
            finally:  # on Ctrl-C or an error, drop the queued chunks instead of decoding them all first
                pool.shutdown(wait=True, cancel_futures=True)
        else:
            decoded = {job: _decode_all(job) for job in todo}
        # taken before the new videos go in, which may push older ones out
        self.cache = [decoded[job] if job in decoded else DECODED.get(key) for job, key in zip(jobs, keys)]
        for job, entry in decoded.items():
            DECODED.put(todo[job], entry)

    def _frames(self, index: int, clips_of) -> np.ndarray:
        """Decode (or take from the cache) the frames `clips_of(num_frames, fps)` asks for: (K*T, H, W, C)."""
        if self.cache is None:
            path = self.path(index)
            info = video_info(path)
            wanted = [i for c in clips_of(info.num_frames, info.fps) for i in c]
            return read_frames(path, wanted, self.backend, info=info)
        entry = self.cache[index]
        if isinstance(entry, str):
            raise VideoReadError(entry)
        frames, fps = entry
        wanted = np.array([i for c in clips_of(len(frames), fps) for i in c])
        return frames[wanted.clip(0, len(frames) - 1)]

    def load(self, index: int) -> torch.Tensor:
        """The views of item `index`, (V, T, C, H, W); raises `VideoReadError` for an unreadable file."""

        def clips_of(n: int, fps: float) -> list[list[int]]:
            return sample_clips(
                self.sampling,
                n,
                self.num_frames,
                fps,
                train=self.train,
                rng=self.rng,
                num_clips=self.num_clips,
                sampling_rate=self.sampling_rate,
                target_fps=self.target_fps,
            )

        frames = self._frames(index, clips_of)  # (K*T, H, W, C)
        return views_from_frames(frames, self.num_frames, self.transform, self.rng)  # (V, T, C, H, W), clip-major

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        try:
            video = self.load(index)
        except VideoReadError as e:
            self.num_skipped += 1
            warnings.warn(f"skipping item {index}: {e}", RuntimeWarning, stacklevel=2)
            return None
        return {"video": video if self.multi_view else video[0], "label": self.items[index][1], "index": index}


class DecodedVideos:
    """The videos `preload` (`data.cache=true`) decoded in this process, shared by every later dataset of it.

    One instance lives at `timesformer_lite.data.DECODED`. A video is taken from it while its file is the one
    decoded: the key holds the file's device, inode, size, modification time and status-change time (ctime).
    ctime cannot be set by a program (`touch -d` and `os.utime` set it to now), so a file replaced by another of
    the same size, even with its mtime kept, is decoded again. Beyond `max_bytes` of frames the oldest videos
    go first. Frames are read-only: datasets index them into copies.

        from timesformer_lite.data import DECODED
        DECODED                  # DecodedVideos(12 videos, 3.1 MiB of at most 2048 MiB)
        DECODED.clear()          # free the memory (datasets that took their videos keep them)
        DECODED.max_bytes = 0    # keep nothing from now on

    Args:
        max_bytes: the most bytes of frames kept (2 GiB by default; 0 keeps nothing).
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple, tuple[np.ndarray, float] | str] = OrderedDict()
        self.bytes = 0

    @staticmethod
    def key(path: str, backend: str) -> tuple:
        """What identifies the decoded content of `path`: (path, backend, device, inode, size, mtime, ctime)."""
        try:
            st = os.stat(path)
        except OSError:
            return (path, backend, None)  # missing: decoded (into its error) every time
        return (path, backend, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def __contains__(self, key: tuple) -> bool:
        return key in self.entries  # a missing file's key is never put

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"DecodedVideos({len(self)} videos, {self.bytes / 2**20:.1f} MiB of at most {self.max_bytes / 2**20:.0f} MiB)"

    def get(self, key: tuple) -> tuple[np.ndarray, float] | str:
        self.entries.move_to_end(key)
        return self.entries[key]

    def put(self, key: tuple, entry: tuple[np.ndarray, float] | str) -> None:
        if key[2] is None or key in self.entries:
            return
        if not isinstance(entry, str):
            entry[0].flags.writeable = False
        self.entries[key] = entry
        self.bytes += _nbytes(entry)
        while self.bytes > self.max_bytes and self.entries:
            self.bytes -= _nbytes(self.entries.popitem(last=False)[1])

    def clear(self) -> None:
        """Forget every decoded video (the next `preload` decodes its files again)."""
        self.entries.clear()
        self.bytes = 0


def _nbytes(entry: tuple[np.ndarray, float] | str) -> int:
    return len(entry) if isinstance(entry, str) else entry[0].nbytes


DECODED = DecodedVideos()


def _decode_all(job: tuple[str, str]) -> tuple[np.ndarray, float] | str:
    """Every frame of one video and its fps, or the error message if it cannot be read (for `preload`)."""
    path, backend = job
    try:
        info = video_info(path)
        return read_frames(path, range(info.num_frames), backend, info=info), info.fps
    except VideoReadError as e:
        return str(e)


def _resolve(root: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else root / path


def _items(cfg: Config, split: str) -> tuple[Items, list[str]]:
    """The (path, label) list and class names of one split, from whatever format `data.dataset` names."""
    d = cfg.data
    root = Path(d.root)
    list_name = {"train": d.train_list, "val": d.val_list, "test": d.test_list}[split]
    if d.dataset in ("toy", "list", "csv"):
        if d.dataset == "toy":
            from .toy import ensure_toy_data_for

            ensure_toy_data_for(d, root)
        classes = read_classes(_resolve(root, d.classes)) if d.classes else None
        reader = read_csv_list if d.dataset == "csv" else read_list
        items = reader(_resolve(root, list_name), classes)
        if classes is None:
            classes = [str(i) for i in range(max(label for _, label in items) + 1)] if items else []
        return items, classes
    if d.dataset == "folder":
        classes = read_classes(_resolve(root, d.classes)) if d.classes and _resolve(root, d.classes).is_file() else None
        return scan_folder(root, split, classes)
    if d.dataset == "ucf101":
        return ucf101_split(root, d.split, "train" if split == "train" else "test")
    if d.dataset == "hmdb51":
        return hmdb51_split(root, d.split, "train" if split == "train" else "test")
    if d.dataset == "kinetics":
        return _kinetics_items(root, split)
    raise ValueError(f"data.dataset={d.dataset!r} is not one of {', '.join(DATASETS)}")


def _kinetics_items(root: Path, split: str) -> tuple[Items, list[str]]:
    """Kinetics: `root/annotations/{train,val}.csv` (or `validate.csv`), clips in `root/{train,val}/`.

    "val" and "test" both use the validation set, the split every published K400 number is measured on.
    """
    ann = root / "annotations"

    def csv_for(name: str) -> Path:
        options = [ann / f"{name}.csv"] + ([ann / "validate.csv"] if name == "val" else [])
        found = [p for p in options if p.is_file()]
        if not found:
            raise AnnotationError(f"Kinetics: '{options[0]}' does not exist; put the annotation CSVs in {ann}/")
        return found[0]

    name = "train" if split == "train" else "val"
    train_csv = csv_for("train")
    classes = sorted({label for label, _ in kinetics_annotations(train_csv)})
    folders = [root / name] + ([root / "validate"] if name == "val" else [])
    video_dir = next((f for f in folders if f.is_dir()), folders[0])
    items, classes, missing = kinetics_split(root, csv_for(name), video_dir, classes)
    if missing:
        warnings.warn(
            f"Kinetics {split}: {len(missing)} of {len(items) + len(missing)} clips in the CSV are not under "
            f"'{video_dir}' (first: {missing[0]}); they are left out",
            RuntimeWarning,
            stacklevel=3,
        )
    return items, classes


def build_dataset(cfg: Config, split: str) -> VideoDataset:
    """The dataset of one split as the trainer and evaluator use it.

    Args:
        cfg: the full config (uses `cfg.data`, `cfg.model.num_frames`, `cfg.model.img_size`, `cfg.train.seed`).
        split: "train", "val" or "test" (see the module docstring for what each does).

    Raises:
        AnnotationError: a label file is missing or malformed (the message names file and line).
        ValueError: an unknown dataset, split or sampling name.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    d = cfg.data
    items, classes = _items(cfg, split)
    if not items:
        raise AnnotationError(f"{d.dataset} dataset at '{d.root}' has no {split} videos; check data.root and the lists")
    first = Path(d.root) / items[0][0]
    if not first.exists():
        raise AnnotationError(
            f"{d.dataset} {split}: the first video '{first}' does not exist; data.root={d.root!r} is probably wrong"
        )
    train = split == "train"
    test = split == "test"
    transform = clip_transform(cfg, split)
    dataset = VideoDataset(
        d.root,
        items,
        classes,
        num_frames=cfg.model.num_frames,
        transform=transform,
        sampling=d.train_sampling if train else d.test_sampling,
        num_clips=d.num_clips if test else 1,
        multi_view=test,
        sampling_rate=d.sampling_rate,
        target_fps=d.target_fps,
        backend=d.backend,
        seed=cfg.train.seed,
    )
    if d.cache:
        dataset.preload(workers=min(os.cpu_count() or 1, 8))
    return dataset
