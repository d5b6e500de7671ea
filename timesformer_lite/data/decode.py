"""Reading frames from video files: decord first, PyAV as the reference and the fallback.

    frames = read_frames("clip.mp4", [0, 8, 16, 24])   # uint8 (T, H, W, C), RGB

Every read starts with a PyAV demux pass (packets only, no decoding: ~2 ms for a 10 s clip). It gives the
*verified* frame count, because a container header can over-report `nb_frames` and decord then hangs or
returns garbage (decord issues #269, #373), and it gives the presentation-order timestamp of every frame,
which lets the PyAV path seek to the right keyframe instead of decoding from the start.

decord 0.6.0 is fast but not trustworthy, so `backend="auto"` checks what it returns and falls back to
PyAV when it raises (e.g. `DECORDArrayCopyFromTo` at widths 16, 24, 48, 72), when the array is not
`(T, H, W, 3)` (its single-frame path returns 4- or 6-channel garbage at those widths), or when a side is
odd (its 4:2:0 colour conversion then differs from FFmpeg's by up to ~50 grey levels). The result is that
every video PyAV can read gives the same frames through `read_frames`, whichever backend produced them.

Frames larger than `MAX_PIXELS` (4K UHD, 3840 x 2160) are scaled down inside the decoder (PyAV, FFmpeg's
swscale with area averaging) to the largest size of the same shape that fits it, so that memory stays bounded:
one 8000 x 8000 frame is 192 MB as uint8 and 768 MB as float, and predicting on such a clip took 8 GB. The
transforms then resize as usual; frames up to 4K are decoded exactly as they are.
"""

from __future__ import annotations

import bisect
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BACKENDS = ("auto", "decord", "pyav")
MAX_PIXELS = 3840 * 2160  # larger frames are scaled down in the decoder to fit this many pixels
_REENCODE = "re-encode it (e.g. `ffmpeg -i in -c:v libx264 -pix_fmt yuv420p out.mp4`) or remove it from the list"


def pyav():
    """The `av` module, imported on first use: the model, the weights and the benchmarks work without PyAV
    (a GPU image may lack it); reading or writing a video needs it."""
    try:
        import av
    except ImportError as e:
        raise ImportError("reading and writing videos needs PyAV: pip install av") from e
    return av


class VideoReadError(ValueError):
    """A video file is missing, empty, truncated, not a video, or has no frames. The message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What the demux pass learned about a video (no frame was decoded).

    Args:
        path: the file.
        num_frames: verified frame count: non-empty video packets, not the header's `nb_frames`.
        fps: average frame rate (frames per second); `num_frames / duration` for variable-rate video.
        width, height: frame size in pixels.
        pts: presentation timestamps in display order, one per frame (empty when the container has none).
        keyframe_pts: timestamps of the keyframes, sorted.
    """

    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    pts: tuple[int, ...]
    keyframe_pts: tuple[int, ...]

    @property
    def duration(self) -> float:
        """Seconds of video, `num_frames / fps`."""
        return self.num_frames / self.fps if self.fps > 0 else 0.0


def _fail(path: str | Path, cause: str, fix: str) -> VideoReadError:
    return VideoReadError(f"video '{path}' {cause}; {fix}")


def _check_file(path: str | Path) -> None:
    if not os.path.exists(path):
        raise _fail(path, "does not exist", "check the path (list files are relative to data.root)")
    if os.path.isdir(path):
        raise _fail(path, "is a directory, not a video file", "point to the video file itself")
    if os.path.getsize(path) == 0:
        raise _fail(path, "is empty (0 bytes)", "download or extract it again")


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, rate, size and timestamps of a video, from one demux pass (fast, nothing is decoded).

    Args:
        path: a video file any FFmpeg build reads (mp4, avi, mkv, webm, ...).

    Raises:
        VideoReadError: the file is missing, empty, not a video, truncated beyond use, or has no frames.
    """
    _check_file(path)
    av = pyav()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _fail(path, "has no video stream (no frames, or audio only)", _REENCODE)
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    except av.error.EOFError as e:
        raise _fail(path, "ends before its first frame (no frames, or truncated)", _REENCODE) from e
    except av.error.FFmpegError as e:
        raise _fail(path, f"is not a video FFmpeg can read ({type(e).__name__}: {e.strerror or e})", _REENCODE) from e
    if not packets:
        raise _fail(path, "has no frames", _REENCODE)
    if width <= 0 or height <= 0:
        raise _fail(path, f"has an invalid frame size {width}x{height}", _REENCODE)
    have_pts = all(p is not None for p, _ in packets)
    pts = tuple(sorted(p for p, _ in packets)) if have_pts else ()
    keys = tuple(sorted(p for p, k in packets if k)) if have_pts else ()
    return VideoInfo(
        path=str(path),
        num_frames=len(packets),
        fps=float(rate) if rate else 0.0,
        width=width,
        height=height,
        pts=pts,
        keyframe_pts=keys,
    )


def num_frames(path: str | Path) -> int:
    """Verified number of frames of a video (see `video_info`)."""
    return video_info(path).num_frames


def decoded_size(width: int, height: int) -> tuple[int, int] | None:
    """The (width, height) frames of a video of this size are decoded to: None (as they are) up to `MAX_PIXELS`,
    else scaled down, aspect kept, to fit it (8000 x 8000 -> 2880 x 2880)."""
    if width * height <= MAX_PIXELS:
        return None
    scale = math.sqrt(MAX_PIXELS / (width * height))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def _clamp(indices: list[int] | np.ndarray, n: int) -> list[int]:
    return [min(max(int(i), 0), n - 1) for i in indices]


def _decode_pyav(
    path: str,
    wanted: set[int],
    position: dict[int, int] | None,
    seek_pts: int | None,
    size: tuple[int, int] | None = None,
) -> dict[int, np.ndarray]:
    """Decode until every wanted index is seen. Indices come from `position` (pts -> index) or by counting;
    `size` (width, height) scales every frame in the decoder (see `decoded_size`)."""
    got: dict[int, np.ndarray] = {}
    last = max(wanted)
    scale = {} if size is None else {"width": size[0], "height": size[1], "interpolation": "AREA"}
    with pyav().open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # one core per DataLoader worker, like decord num_threads=1
        if seek_pts is not None:
            container.seek(seek_pts, stream=stream, backward=True)
        for count, frame in enumerate(container.decode(stream)):
            i = count if position is None else position.get(frame.pts)
            if i is None:
                continue  # a leading frame of an open GOP after a seek
            if i in wanted and i not in got:
                got[i] = frame.to_ndarray(format="rgb24", **scale)
            if i >= last:  # frames arrive in display order
                break
    return got


def _read_pyav(info: VideoInfo, indices: list[int]) -> np.ndarray:
    """Frames `indices` (already clamped) with PyAV, seeking to the last keyframe before the first one wanted."""
    wanted = set(indices)
    size = decoded_size(info.width, info.height)
    got: dict[int, np.ndarray] = {}
    if info.pts:
        position = {p: i for i, p in enumerate(info.pts)}
        k = bisect.bisect_right(info.keyframe_pts, info.pts[min(wanted)]) - 1
        seek = info.keyframe_pts[k] if k > 0 else None
        got = _decode_pyav(info.path, wanted, position, seek, size)
    if len(got) < len(wanted):
        # no timestamps, or decoded timestamps that differ from the packets': count frames from the start
        got = _decode_pyav(info.path, wanted, None, None, size)
    if not got:
        raise _fail(info.path, "has packets but no decodable frame (truncated or corrupt)", _REENCODE)
    # A truncated file decodes fewer frames than it has packets: missing ones repeat the nearest earlier frame.
    decoded = sorted(got)
    out = []
    for i in indices:
        j = bisect.bisect_right(decoded, i) - 1
        out.append(got[decoded[max(j, 0)]])
    return np.stack(out)  # (T, H, W, C)


def _read_decord(info: VideoInfo, indices: list[int], num_threads: int) -> tuple[np.ndarray | None, str]:
    """Frames from decord, or `(None, reason)` when decord cannot be trusted with this file."""
    if decoded_size(info.width, info.height) is not None:
        return None, f"{info.width}x{info.height} frames are above {MAX_PIXELS:,} pixels: PyAV scales them down"
    if info.width % 2 or info.height % 2:
        return None, f"odd frame size {info.width}x{info.height} (decord's 4:2:0 conversion differs from FFmpeg's)"
    try:
        import decord  # imported late: decord before torch/CUDA can segfault (decord #293)

        reader = decord.VideoReader(info.path, num_threads=num_threads)
        if len(reader) != info.num_frames:
            return None, f"decord counts {len(reader)} frames, the demuxer {info.num_frames}"
        frames = reader.get_batch(indices).asnumpy()
    except (ImportError, *decord_errors()) as e:
        return None, f"decord failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    expected = (len(indices), info.height, info.width, 3)
    if frames.shape != expected or frames.dtype != np.uint8:
        return None, f"decord returned {frames.dtype} {frames.shape}, expected uint8 {expected}"
    return frames, ""


def decord_errors() -> tuple[type[BaseException], ...]:
    """The exception types decord raises from native code (its own `DECORDError` and plain runtime errors)."""
    try:
        from decord._ffi.base import DECORDError
    except ImportError:
        return (RuntimeError,)
    return (DECORDError, RuntimeError)


def read_frames(
    path: str | Path,
    indices: list[int] | np.ndarray,
    backend: str = "auto",
    *,
    num_threads: int = 1,
    info: VideoInfo | None = None,
) -> np.ndarray:
    """Decode the frames at `indices` (display order, repeats allowed) into a uint8 array (T, H, W, C), RGB.

    Indices are clamped to `[0, num_frames - 1]` of the verified frame count, so a sampler may ask past the
    end of a short or over-reported video and get its last frame. Frames above `MAX_PIXELS` come scaled down
    (`decoded_size`), by PyAV whatever the backend. A fresh reader is opened in every call, so
    the function is safe in DataLoader workers (decord readers must never cross processes, decord #294).

    Args:
        path: the video file.
        indices: frame indices, any order; `T = len(indices)`.
        backend: "auto" (decord, checked, PyAV when decord cannot be trusted), "decord" or "pyav".
        num_threads: decoder threads; keep 1 inside DataLoader workers (decord's 0 means all cores).
        info: the `video_info(path)` result when the caller already has it (saves the demux pass).

    Raises:
        VideoReadError: the file is missing, empty, not a video, truncated beyond use, has no frames, or
            (backend="decord" only) decord cannot read it correctly.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if len(indices) == 0:
        raise ValueError(f"no frame indices given for video '{path}'; ask for at least one frame")
    info = info if info is not None else video_info(path)
    idx = _clamp(indices, info.num_frames)
    if backend != "pyav":
        frames, reason = _read_decord(info, idx, num_threads)
        if frames is not None:
            return frames
        if backend == "decord":
            raise _fail(path, f"cannot be read correctly by decord: {reason}", "use backend='pyav' (or 'auto')")
    try:
        return _read_pyav(info, idx)
    except pyav().error.FFmpegError as e:
        raise _fail(path, f"failed to decode ({type(e).__name__}: {e.strerror or e})", _REENCODE) from e
