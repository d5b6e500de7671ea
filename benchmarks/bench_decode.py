"""Decode benchmark (performance.md goals G5, G5b, G6): decord vs PyAV per core, frame identity, worker scaling.

    python benchmarks/bench_decode.py [--clips 3] [--reps 4] [--workers 2] [--no-append]

Clips are generated K400-like: 10 s, 340x256, 25 fps, H.264 yuv420p, keyframe every 250 frames (one GOP,
the YouTube-derived case) and every 16. Each read takes 8 frames `linspace`d over a 256-frame window at
a random start, one thread per decoder, in one process. Three contenders, interleaved, medians reported:

- decord: `read_frames(..., backend="decord")`, what the data pipeline uses (one `get_batch`);
- PyAV as the reference implementations decode (official TimeSformer / PySlowFast `pyav_decode`, which
  PaddleVideo follows): seek before the window, decode it, convert *every* frame of the window to RGB,
  then pick the 8 sampled ones. This is the "PyAV" of the issue's decord / PyAV target;
- our PyAV reader: `read_frames(..., backend="pyav")`, the fallback, which converts only the 8 frames.

All three must return the same frames (G5b). Results are appended to benchmarks/RESULTS.md under
"## Decoding".

    python benchmarks/bench_decode.py --toy [--per-class 20] [--no-append]

`--toy` measures the toy-motions encoding instead (issue 20): the same clips (`per_class` of every class)
written with the generator's `X264_OPTIONS` and with recipe v5's (crf 23, a key frame first), interleaved:
kB per clip, decoding ms per clip with `read_frames` as the data pipeline calls it, the mean PSNR of each frame
position against the raw render, and whether a clip encoded backwards decodes to its frames backwards.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from timesformer_lite.data import read_frames, video_info


def make_clip(path: Path, keyint: int, seconds: int = 10, fps: int = 25, width: int = 340, height: int = 256) -> Path:
    """A moving textured scene (so motion compensation has work to do)."""
    rng = np.random.default_rng(keyint)
    texture = rng.integers(0, 256, (height * 2, width * 2, 3), dtype=np.uint8)
    texture = ((texture.astype(np.uint16) + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) // 3).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=Fraction(fps), options={"g": str(keyint), "keyint_min": str(keyint), "crf": "23"}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(seconds * fps):
            y, x = (2 * i) % height, (3 * i) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[y : y + height, x : x + width]), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def windows(n: int, count: int, rng: np.random.Generator) -> list[list[int]]:
    """`count` index lists: 8 frames linspace'd over a 256-frame window (clamped to the clip)."""
    out = []
    for _ in range(count):
        start = rng.uniform(0, max(n - 256, 0))
        out.append([min(int(p), n - 1) for p in np.linspace(start, start + 255, 8)])
    return out


def read_reference_pyav(path: Path, indices: list[int]) -> np.ndarray:
    """Frames `indices` decoded the way the reference implementations do it with PyAV (PySlowFast's
    `pyav_decode`): seek to the keyframe before the window, decode up to its end, convert every frame of the
    window to RGB, then index the converted list. Like the other readers it first reads the frame index
    (`video_info`: one demux pass) to map frame numbers to timestamps."""
    info = video_info(path)
    first, last = min(indices), max(indices)
    start, end = info.pts[first], info.pts[last]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        container.seek(start, stream=stream, backward=True)  # lands on the keyframe at or before `start`
        window = []
        for frame in container.decode(stream):
            if frame.pts is not None and frame.pts >= start:
                window.append(frame.to_rgb().to_ndarray())
            if frame.pts is not None and frame.pts >= end:
                break
    return np.stack([window[i - first] for i in indices])


READERS = {
    "decord": lambda path, idx: read_frames(path, idx, "decord"),
    "reference PyAV": read_reference_pyav,
    "our PyAV": lambda path, idx: read_frames(path, idx, "pyav"),
}


def bench_backends(clips: list[Path], reps: int) -> dict[str, object]:
    """Interleaved timings of every reader (clips/s medians) and the G5b frame comparison against decord."""
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {name: [] for name in READERS}
    max_diff, matches, total = 0, 0, 0
    for _ in range(reps):
        for path in clips:
            info = video_info(path)
            idx = windows(info.num_frames, 1, rng)[0]
            frames = {}
            for name, read in READERS.items():
                t = time.perf_counter()
                frames[name] = read(path, idx)
                times[name].append(time.perf_counter() - t)
            for name in READERS:
                diff = np.abs(frames["decord"].astype(int) - frames[name].astype(int)).reshape(8, -1).max(1)
                max_diff = max(max_diff, int(diff.max()))
                matches += int((diff <= 1).sum())
                total += 8
    rate = {k: 1.0 / statistics.median(v) for k, v in times.items()}
    return {"rate": rate, "max_diff": max_diff, "match": matches / total}


class ClipReads(Dataset):
    def __init__(self, clips: list[Path], n: int) -> None:
        self.clips, self.n = clips, n
        self.plan = windows(video_info(clips[0]).num_frames, n, np.random.default_rng(1))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(read_frames(self.clips[i % len(self.clips)], self.plan[i]))


def loader_rate(clips: list[Path], workers: int, per_worker: int) -> float:
    """Clips/s through a DataLoader with `workers` processes (after one warm-up batch per worker)."""
    ds = ClipReads(clips, per_worker * workers + workers)
    loader = DataLoader(ds, batch_size=1, num_workers=workers, prefetch_factor=2)
    it = iter(loader)
    for _ in range(workers):
        next(it)
    t = time.perf_counter()
    n = sum(1 for _ in it)
    return n / (time.perf_counter() - t)


V5_OPTIONS = {"crf": "23", "preset": "veryfast", "x264-params": "mbtree=0"}  # toy recipe v5's encoder


def psnr_by_frame(decoded: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """PSNR (dB) of each frame of uint8 (T, H, W, C) `decoded` against `raw`. (T,)"""
    mse = ((decoded.astype(float) - raw.astype(float)) ** 2).reshape(len(raw), -1).mean(1)
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


def bench_toy(tmp: Path, per_class: int) -> list[str]:
    """The toy encoder against v5's on the same clips: size, decode time, PSNR by frame position, reversal."""
    from timesformer_lite.data.toy import CLASSES, X264_OPTIONS, clip_rng, make_clip, write_mp4

    raw = [make_clip(c, clip_rng(0, "test", c, i)) for c in range(len(CLASSES)) for i in range(per_class)]
    encoders = {"v5 (crf 23)": V5_OPTIONS, "now": X264_OPTIONS}
    paths = {name: [] for name in encoders}
    for k, clip in enumerate(raw):
        for name, options in encoders.items():
            path = tmp / f"{name[:2]}_{k}.mp4"
            write_mp4(path, clip, options=options)
            paths[name].append(path)
    times = {name: [] for name in encoders}
    decoded = {name: [] for name in encoders}
    for k in range(len(raw)):  # interleaved, so that a change of machine load hits both alike
        for name in encoders:
            t = time.perf_counter()
            decoded[name].append(read_frames(paths[name][k], range(len(raw[k]))))
            times[name].append(time.perf_counter() - t)
    lines = []
    for name, options in encoders.items():
        psnr = np.mean([psnr_by_frame(d, r) for d, r in zip(decoded[name], raw)], axis=0)
        backwards = tmp / "backwards.mp4"
        same = 0
        for clip, frames in zip(raw[::per_class], decoded[name][::per_class]):  # one clip of every class
            write_mp4(backwards, np.ascontiguousarray(clip[::-1]), options=options)
            same += int(np.array_equal(read_frames(backwards, range(len(clip)))[::-1], frames))
        kb = np.mean([p.stat().st_size for p in paths[name]]) / 1e3
        lines.append(
            f"| toy {name}: `{options}` | {kb:.2f} kB/clip, decode {1e3 * statistics.median(times[name]):.2f} ms/clip "
            f"| PSNR by frame {' '.join(f'{v:.1f}' for v in psnr)} dB, **spread {psnr.max() - psnr.min():.2f} dB** "
            f"| backwards = reversed: {same}/{len(CLASSES)} |"
        )
        print(lines[-1])
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3, help="clips per keyframe interval")
    parser.add_argument("--reps", type=int, default=4, help="reads per clip and backend")
    parser.add_argument("--workers", type=int, default=2, help="largest DataLoader worker count to test")
    parser.add_argument("--no-append", action="store_true", help="print only; do not touch RESULTS.md")
    parser.add_argument("--toy", action="store_true", help="measure the toy-motions encoding instead")
    parser.add_argument("--per-class", type=int, default=20, help="--toy: clips of every class")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.toy:
        with tempfile.TemporaryDirectory() as tmp:
            lines = bench_toy(Path(tmp), args.per_class)
        if not args.no_append:
            append(
                lines, f"`python benchmarks/bench_decode.py --toy`: {10 * args.per_class} toy clips (8 frames of 32x32)"
            )
        return 0
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        for keyint in (250, 16):
            sets[keyint] = [make_clip(Path(tmp) / f"k{keyint}_{i}.mp4", keyint) for i in range(args.clips)]
        for keyint, clips in sets.items():
            r = bench_backends(clips, args.reps)
            rate = r["rate"]
            figures = ", ".join(f"{name} {rate[name]:.1f}" for name in READERS)
            check = f"G5b frames within 1 level: {100 * r['match']:.0f} %, max diff {r['max_diff']}"
            for peer in ("reference PyAV", "our PyAV"):
                target = " (target >= 1.3)" if peer == "reference PyAV" else ""
                line = (
                    f"| G5 keyint {keyint}, clips/s/core: {figures} "
                    f"| **decord / {peer} = {rate['decord'] / rate[peer]:.2f}x**{target} | {check} |"
                )
                print(line)
                lines.append(line)
        one = loader_rate(sets[16], 1, 12)
        for n in range(2, args.workers + 1):
            many = loader_rate(sets[16], n, 12)
            line = (
                f"| G6 DataLoader, keyint 16 | 1 worker {one:.1f} clips/s, {n} workers {many:.1f} clips/s "
                f"| **scaling {many / (n * one):.2f}** | |"
            )
            print(line)
            lines.append(line)
    if not args.no_append:
        append(lines)
    return 0


K400_LIKE = "`python benchmarks/bench_decode.py`: 8 frames over a 256-frame window of 10 s 340x256 25 fps H.264 clips,"


def append(lines: list[str], what: str = K400_LIKE) -> None:
    """Add a dated block under '## Decoding' in RESULTS.md."""
    import decord
    from results import append_results

    machine = f"{os.cpu_count()}-core {platform.machine()} CPU"
    block = [
        f"### {datetime.date.today().isoformat()}, {machine}, torch {torch.__version__}, decord {decord.__version__}, "
        f"PyAV {av.__version__}",
        "",
        what,
        "one decoder thread, contenders interleaved, medians (the script's docstring defines them).",
        "",
        "| measurement | figures | ratio | check |",
        "|---|---|---|---|",
        *lines,
    ]
    append_results("## Decoding", block)


if __name__ == "__main__":
    sys.exit(main())
