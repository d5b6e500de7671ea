"""read_frames / video_info: decord and PyAV give the same frames; bad files give one-line VideoReadErrors."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import nearest_frame, pattern_frames, write_empty_video, write_video

from timesformer_lite.data import VideoReadError, decode, num_frames, read_frames, video_info
from timesformer_lite.data.decode import MAX_PIXELS, decoded_size

# (width, height, codec, pix_fmt): decord 0.6.0 raises at widths 16, 24, 48, 72; odd sides need 4:4:4 for x264
SIZES = [
    (16, 16, "libx264", "yuv420p"),
    (24, 24, "libx264", "yuv420p"),
    (32, 32, "libx264", "yuv420p"),
    (40, 40, "libx264", "yuv420p"),
    (48, 48, "libx264", "yuv420p"),
    (64, 64, "libx264", "yuv420p"),
    (72, 40, "libx264", "yuv420p"),
    (40, 72, "libx264", "yuv420p"),
    (64, 90, "libx264", "yuv420p"),
    (90, 64, "libx264", "yuv420p"),
    (97, 55, "libx264", "yuv444p"),
    (55, 97, "libx264", "yuv444p"),
    (33, 33, "mpeg4", "yuv420p"),  # odd 4:2:0: decord's colour conversion differs, auto must use PyAV
    (97, 55, "mpeg4", "yuv420p"),
]
N = 12


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("sizes")
    out = {}
    for w, h, codec, pix in SIZES:
        frames = pattern_frames(N, w, h, seed=w * h)
        out[(w, h, codec)] = (write_video(root / f"{w}x{h}_{codec}.mp4", frames, codec=codec, pix_fmt=pix), frames)
    return out


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}-{c}" for w, h, c, _ in SIZES])
def test_auto_backend_gives_pyav_frames_at_every_size(videos, size):
    path, raw = videos[size[:3]]
    indices = [0, 3, 3, 11, 7, 1]
    auto = read_frames(path, indices)
    ref = read_frames(path, indices, backend="pyav")
    assert auto.dtype == np.uint8 and auto.shape == (6, size[1], size[0], 3)
    assert np.abs(auto.astype(int) - ref.astype(int)).max() <= 1
    assert [nearest_frame(f, raw) for f in auto] == indices


def test_video_info_counts_frames_and_reads_size_and_rate(videos):
    path, _ = videos[(72, 40, "libx264")]
    info = video_info(path)
    assert (info.num_frames, info.width, info.height, info.fps) == (N, 72, 40, 10.0)
    assert info.duration == pytest.approx(1.2)
    assert num_frames(path) == N
    assert len(info.pts) == N and info.keyframe_pts[0] == info.pts[0]


def test_decord_backend_refuses_the_widths_it_corrupts(videos):
    path, _ = videos[(48, 48, "libx264")]
    with pytest.raises(VideoReadError, match=r"48x48_libx264.mp4' cannot be read correctly by decord.*backend='pyav'"):
        read_frames(path, [0, 1], backend="decord")


def test_decord_backend_matches_pyav_where_it_works(videos):
    path, raw = videos[(64, 64, "libx264")]
    a, b = read_frames(path, range(N), backend="decord"), read_frames(path, range(N), backend="pyav")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert [nearest_frame(f, raw) for f in a] == list(range(N))


def test_indices_are_clamped_to_the_verified_count(videos):
    path, raw = videos[(32, 32, "libx264")]
    frames = read_frames(path, [-3, N, N + 100])
    assert [nearest_frame(f, raw) for f in frames] == [0, N - 1, N - 1]


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    raw = pattern_frames(75, 64, 48, seed=3)
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", raw, keyint=10), raw


@pytest.mark.parametrize("backend", ["auto", "pyav", "decord"])
def test_frames_after_a_seek_are_the_requested_ones(long_video, backend):
    path, raw = long_video
    indices = [74, 41, 50, 3, 60]
    frames = read_frames(path, indices, backend=backend)
    assert [nearest_frame(f, raw) for f in frames] == indices
    assert np.abs(frames.astype(int) - read_frames(path, indices, backend="pyav").astype(int)).max() <= 1


def test_audio_track_is_ignored(tmp_path):
    raw = pattern_frames(20, 64, 48)
    path = write_video(tmp_path / "audio.mp4", raw, audio=True)
    info = video_info(path)
    assert info.num_frames == 20
    assert [nearest_frame(f, raw) for f in read_frames(path, [0, 10, 19])] == [0, 10, 19]


def test_variable_frame_rate_indexes_frames_in_display_order(tmp_path):
    raw = pattern_frames(10, 64, 48)
    pts = [0, 40, 120, 130, 300, 310, 320, 500, 700, 710]
    path = write_video(tmp_path / "vfr.mp4", raw, pts_ms=pts)
    info = video_info(path)
    assert info.num_frames == 10
    assert np.diff(info.pts).min() != np.diff(info.pts).max()  # really variable
    for backend in ("auto", "pyav"):
        assert [nearest_frame(f, raw) for f in read_frames(path, range(10), backend=backend)] == list(range(10))


def _one_line_error(path, match):
    with pytest.raises(VideoReadError) as e:
        read_frames(path, [0])
    msg = str(e.value)
    assert f"'{path}'" in msg and "\n" not in msg
    assert match in msg
    return msg


def test_missing_file_is_named_with_the_fix(tmp_path):
    _one_line_error(tmp_path / "nope.mp4", "does not exist; check the path")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    _one_line_error(tmp_path / "empty.mp4", "is empty (0 bytes)")


def test_text_file_renamed_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 20)
    _one_line_error(tmp_path / "notes.mp4", "is not a video FFmpeg can read")


def test_truncated_mp4_without_index(tmp_path):
    path = write_video(tmp_path / "full.mp4", pattern_frames(30, 64, 48))
    data = path.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # the moov index sits at the end
    _one_line_error(tmp_path / "cut.mp4", "re-encode it")


def test_truncated_mkv_reads_the_frames_it_still_has(tmp_path):
    raw = pattern_frames(40, 64, 48)
    path = write_video(tmp_path / "full.mkv", raw)
    data = path.read_bytes()
    (tmp_path / "cut.mkv").write_bytes(data[: int(len(data) * 0.6)])
    n = num_frames(tmp_path / "cut.mkv")
    assert 0 < n < 40
    frames = read_frames(tmp_path / "cut.mkv", [0, n - 1, 39])
    got = [nearest_frame(f, raw) for f in frames]
    assert got[0] == 0 and got[1] == got[2] <= n - 1


@pytest.mark.parametrize("suffix,match", [(".mp4", "has no video stream"), (".mkv", "ends before its first frame")])
def test_video_without_frames(tmp_path, suffix, match):
    _one_line_error(write_empty_video(tmp_path / f"zero{suffix}"), match)


def test_directory_and_bad_arguments(tmp_path, videos):
    _one_line_error(tmp_path, "is a directory")
    path, _ = videos[(32, 32, "libx264")]
    with pytest.raises(ValueError, match="backend='cuda' is not one of auto, decord, pyav"):
        read_frames(path, [0], backend="cuda")
    with pytest.raises(ValueError, match="no frame indices"):
        read_frames(path, [])


# ---- issue 24: frames above 4K are scaled down in the decoder, so memory no longer grows with frame size ------


def test_decoded_size_keeps_4k_and_scales_larger_frames_to_fit_it():
    assert decoded_size(3840, 2160) is None and decoded_size(2160, 3840) is None and decoded_size(32, 32) is None
    assert decoded_size(8000, 8000) == (2880, 2880)  # 8,294,400 pixels: exactly 4K's count
    assert decoded_size(7680, 4320) == (3840, 2160)  # 8K UHD -> 4K UHD
    w, h = decoded_size(16000, 1000)
    assert w * h <= MAX_PIXELS and abs(w / h - 16) < 0.01


def test_frames_above_the_limit_come_scaled_by_the_decoder_whatever_the_backend(tmp_path, monkeypatch):
    raw = pattern_frames(6, 128, 96, seed=3)
    path = write_video(tmp_path / "big.mp4", raw, pix_fmt="yuv444p")
    full = read_frames(path, [0, 5, 5], "pyav")
    assert full.shape == (3, 96, 128, 3)  # at the limit's default, decoded as it is
    monkeypatch.setattr(decode, "MAX_PIXELS", 64 * 48)  # a quarter of the frame: scaled by 1/2 on each side
    for backend in ("auto", "pyav"):
        small = read_frames(path, [0, 5, 5], backend)
        assert small.shape == (3, 48, 64, 3) and small.dtype == np.uint8
        area = full.reshape(3, 48, 2, 64, 2, 3).mean(axis=(2, 4))  # what averaging each 2x2 block gives
        assert np.abs(small - area).mean() < 2.0, backend
        assert np.array_equal(small[1], small[2])
    with pytest.raises(
        VideoReadError, match="cannot be read correctly by decord: 128x96 frames are above 3,072 pixels"
    ):
        read_frames(path, [0], "decord")
