"""Which frames to read: pure functions from a video's frame count to lists of frame indices.

Three schemes, each with a training form (random, from the `np.random.Generator` passed in, so a worker's
sampling is reproducible) and a test form (deterministic):

- `segment`: TSN / SSv2 style. The video is cut into T equal segments; training takes one random frame
  per segment, test takes each segment's centre. Covers the whole video whatever its length.
- `linspace`: T frames evenly spaced over the whole video, first and last included (PaddleVideo's test
  decoder with one window = the video). Deterministic in training too.
- `dense`: the official TimeSformer "8x32". A window of `T * sampling_rate * fps / target_fps` frames
  (256 frames at 30 fps for 8x32), T frames `linspace`d over it, truncated to integers; the window starts
  at random in training and at `delta * clip_idx / num_clips` at test (`delta` = frames left over), so
  one test clip starts at frame 0, as in the official code and PaddleVideo (not the centre).

Short videos (fewer frames than T, or than the dense window) repeat frames: segment and linspace
indices become non-decreasing with repeats, dense indices past the end are clamped to the last frame
(the official behaviour). Nothing here reads a file; `n` comes from `video_info(path).num_frames`.
"""

from __future__ import annotations

import numpy as np

from ..config import SAMPLINGS  # noqa: F401 (the names, checked when a config is built)


def _check(n: int, num_frames: int) -> None:
    if n < 1:
        raise ValueError(f"cannot sample from a video with {n} frames")
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be at least 1")


def segment_indices(
    n: int, num_frames: int, *, train: bool, rng: np.random.Generator | None = None, position: float = 0.5
) -> list[int]:
    """One frame per segment of `n / num_frames` frames.

    Segment i covers frames `[floor(i*n/T), floor((i+1)*n/T))`. Training picks one frame uniformly in it;
    test picks the frame at `position` of its length (0.5 = centre; `test_views` shifts it for several clips).
    When `n < T` a segment is shorter than one frame and neighbouring segments share a frame.

    Args:
        n: frames in the video.
        num_frames: T, frames to return.
        train: random (True) or deterministic (False) choice within each segment.
        rng: the generator for training; required when `train`.
        position: where in each segment the test frame sits, in [0, 1).

    Returns:
        T non-decreasing frame indices in [0, n-1]. Example: n=16, T=4, test -> [2, 6, 10, 14].
    """
    _check(n, num_frames)
    bounds = [i * n // num_frames for i in range(num_frames + 1)]
    out = []
    for i in range(num_frames):
        start, stop = bounds[i], max(bounds[i + 1], bounds[i] + 1)  # stop exclusive, at least one frame
        if train:
            if rng is None:
                raise ValueError("segment sampling for training needs an rng (np.random.Generator)")
            out.append(int(rng.integers(start, stop)))
        else:
            out.append(min(int(i * n / num_frames + position * n / num_frames), n - 1))
    return out


def linspace_indices(n: int, num_frames: int, *, offset: float = 0.0) -> list[int]:
    """`num_frames` indices evenly spaced from the first frame to the last, truncated to integers.

    Args:
        n: frames in the video.
        num_frames: T.
        offset: shift in units of the spacing, in [0, 1) (used for several test clips), clamped at the end.

    Returns:
        T indices. Example: n=10, T=4 -> [0, 3, 6, 9]; n=3, T=5 -> [0, 0, 1, 1, 2].
    """
    _check(n, num_frames)
    step = (n - 1) / (num_frames - 1) if num_frames > 1 else 0.0
    pos = np.linspace(0, n - 1, num_frames) + offset * step
    return [min(int(p), n - 1) for p in pos]


def dense_window(num_frames: int, sampling_rate: int, fps: float, target_fps: float) -> float:
    """Length in frames of the official dense window: `num_frames * sampling_rate / target_fps * fps`.

    Example: 8x32 at 30 fps -> 256 frames; the same clip at 25 fps -> 213.3 frames.
    """
    if fps <= 0:
        fps = target_fps  # unknown rate: treat the video as recorded at the target rate
    return num_frames * sampling_rate / target_fps * fps


def dense_indices(
    n: int,
    num_frames: int,
    *,
    sampling_rate: int,
    fps: float,
    target_fps: float,
    train: bool,
    rng: np.random.Generator | None = None,
    clip_idx: int = 0,
    num_clips: int = 1,
) -> list[int]:
    """The official "T x sampling_rate" clip: T frames `linspace`d over a window, start random or fixed.

    `delta = max(n - window, 0)`; training starts at `uniform(0, delta)`, test clip k of K at
    `delta * k / K`; indices are `linspace(start, start + window - 1, T)` clamped to `[0, n-1]` and truncated.

    Args:
        n: frames in the video.
        num_frames: T.
        sampling_rate: nominal stride at `target_fps` (32 in the official 8x32).
        fps: the video's frame rate.
        target_fps: the rate the stride refers to (30 officially).
        train: random start (True) or the test rule (False).
        rng: generator for the random start; required when `train`.
        clip_idx, num_clips: which of `num_clips` evenly spaced test windows.

    Returns:
        T non-decreasing indices. Example: n=300, 8x32 at 30 fps, test clip 0 of 1 ->
        [0, 36, 72, 109, 145, 182, 218, 255].
    """
    _check(n, num_frames)
    window = dense_window(num_frames, sampling_rate, fps, target_fps)
    delta = max(n - window, 0.0)
    if train:
        if rng is None:
            raise ValueError("dense sampling for training needs an rng (np.random.Generator)")
        start = float(rng.uniform(0, delta))
    else:
        if not 0 <= clip_idx < num_clips:
            raise ValueError(f"clip_idx={clip_idx} is outside 0..{num_clips - 1}")
        start = delta * clip_idx / num_clips
    pos = np.linspace(start, start + window - 1, num_frames)
    return [int(min(max(p, 0), n - 1)) for p in pos]


def sample_indices(
    mode: str,
    n: int,
    num_frames: int,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    clip_idx: int = 0,
    num_clips: int = 1,
    sampling_rate: int = 32,
    fps: float = 30.0,
    target_fps: float = 30.0,
) -> list[int]:
    """Dispatch to one scheme by name (`data.train_sampling` / `data.test_sampling`).

    For test clip k of K (K > 1): `segment` moves the frame to `(k + 0.5) / K` of each segment, `linspace`
    shifts by `k / K` of the spacing, `dense` uses the official start rule. With K = 1 all three give
    their single standard clip.

    Args:
        mode: "segment", "linspace" or "dense".
        n: frames in the video.
        num_frames: T.
        train: training (random) or test (deterministic) form.
        rng: generator for the training form.
        clip_idx, num_clips: test view k of K.
        sampling_rate, fps, target_fps: for `dense` (see `dense_indices`).
    """
    if mode == "segment":
        return segment_indices(n, num_frames, train=train, rng=rng, position=(clip_idx + 0.5) / num_clips)
    if mode == "linspace":
        return linspace_indices(n, num_frames, offset=0.0 if train else clip_idx / num_clips)
    if mode == "dense":
        return dense_indices(
            n,
            num_frames,
            sampling_rate=sampling_rate,
            fps=fps,
            target_fps=target_fps,
            train=train,
            rng=rng,
            clip_idx=clip_idx,
            num_clips=num_clips,
        )
    raise ValueError(f"sampling {mode!r} is not one of {', '.join(SAMPLINGS)}; set data.train_sampling/test_sampling")
