"""Tiny videos written with PyAV for the data tests (nothing is downloaded).

Frame i of `pattern_frames` is a smooth colour pattern shifted by i plus a bright bar at a position that
depends on i, so every frame differs clearly from every other (frame identity survives H.264).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def pattern_frames(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, height, width, 3): distinguishable frames."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.8, 3)
    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        img = np.stack(
            [
                base[0] + 0.3 * np.sin((x + 3 * i) / 5.0),
                base[1] + 0.3 * np.cos((y + 2 * i) / 6.0),
                np.full(x.shape, base[2] + 0.3 * np.sin(i * 0.9)),
            ],
            -1,
        )
        img[:, (i * 7) % width] = 1.0  # a bright column that moves with the frame index
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def write_video(
    path: str | Path,
    frames: np.ndarray,
    *,
    fps: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    keyint: int | None = None,
    audio: bool = False,
    pts_ms: list[int] | None = None,
) -> Path:
    """Encode uint8 (T, H, W, 3) frames.

    Args:
        keyint: GOP length (keyframe interval); None for the encoder default.
        audio: add a mono AAC track of a sine tone alongside.
        pts_ms: per-frame presentation times in milliseconds (variable frame rate); None for constant fps.
    """
    path = Path(path)
    h, w = frames.shape[1:3]
    options = {"g": str(keyint), "keyint_min": str(keyint)} if keyint and codec.startswith("libx264") else {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps), options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        audio_stream = container.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio_stream is not None:
            samples = len(frames) * 16000 // fps
            tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[None, start : start + 1024]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, start
                container.mux(audio_stream.encode(af))
            container.mux(audio_stream.encode())
    return path


def write_empty_video(path: str | Path, width: int = 32, height: int = 32) -> Path:
    """A valid container with a video stream and no frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        container.start_encoding()  # write the header although no frame follows
    return Path(path)


def nearest_frame(frame: np.ndarray, reference: np.ndarray) -> int:
    """Index of the reference frame (T, H, W, C) closest to `frame` (H, W, C) in mean absolute difference."""
    diffs = np.abs(reference.astype(np.int16) - frame.astype(np.int16)).mean(axis=(1, 2, 3))
    return int(diffs.argmin())
