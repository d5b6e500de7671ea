"""Frame sampling: exact index lists for every scheme, reproducibility, short videos."""

from __future__ import annotations

import numpy as np
import pytest

from timesformer_lite.data import dense_indices, linspace_indices, sample_indices, segment_indices
from timesformer_lite.data.sampling import dense_window


def test_segment_test_takes_segment_centres():
    assert segment_indices(16, 4, train=False) == [2, 6, 10, 14]
    assert segment_indices(8, 8, train=False) == list(range(8))
    assert segment_indices(10, 4, train=False) == [1, 3, 6, 8]  # segments [0,2.5) [2.5,5) [5,7.5) [7.5,10)


def test_segment_short_video_repeats_frames_in_order():
    assert segment_indices(3, 8, train=False) == [0, 0, 0, 1, 1, 2, 2, 2]
    assert segment_indices(1, 4, train=False) == [0, 0, 0, 0]
    train = segment_indices(3, 8, train=True, rng=np.random.default_rng(0))
    assert train == sorted(train) and set(train) <= {0, 1, 2}


def test_segment_train_draws_one_frame_inside_each_segment():
    rng = np.random.default_rng(0)
    draws = np.array([segment_indices(40, 4, train=True, rng=rng) for _ in range(500)])
    for i in range(4):
        assert draws[:, i].min() == 10 * i and draws[:, i].max() == 10 * i + 9  # whole segment, nothing outside
    assert segment_indices(40, 4, train=True, rng=np.random.default_rng(7)) == segment_indices(
        40, 4, train=True, rng=np.random.default_rng(7)
    )


def test_segment_train_without_rng_is_an_error():
    with pytest.raises(ValueError, match="needs an rng"):
        segment_indices(40, 4, train=True)


def test_linspace_covers_first_to_last():
    assert linspace_indices(10, 4) == [0, 3, 6, 9]
    assert linspace_indices(100, 8) == [0, 14, 28, 42, 56, 70, 84, 99]
    assert linspace_indices(3, 5) == [0, 0, 1, 1, 2]
    assert linspace_indices(5, 1) == [0]


def test_dense_window_is_the_official_8x32():
    assert dense_window(8, 32, 30.0, 30.0) == 256
    assert dense_window(8, 32, 25.0, 30.0) == pytest.approx(213.333, abs=1e-3)
    assert dense_window(8, 32, 0.0, 30.0) == 256  # unknown fps -> the target rate


def test_dense_test_single_clip_starts_at_frame_zero():
    # official get_start_end_idx with clip_idx=0, num_clips=1: start = 0, not the centre
    assert dense_indices(300, 8, sampling_rate=32, fps=30, target_fps=30, train=False) == [
        0, 36, 72, 109, 145, 182, 218, 255,
    ]  # fmt: skip


def test_dense_test_clips_are_evenly_spaced_by_delta():
    # 25 fps: window 213.33, delta = 250 - 213.33 = 36.67; clip k starts at delta * k / 3
    clips = [
        dense_indices(250, 8, sampling_rate=32, fps=25, target_fps=30, train=False, clip_idx=k, num_clips=3)
        for k in range(3)
    ]
    assert clips[0] == [0, 30, 60, 91, 121, 151, 182, 212]  # step 212.33 / 7 = 30.33
    assert clips[1] == [12, 42, 72, 103, 133, 163, 194, 224]  # start 12.22
    assert clips[2] == [24, 54, 85, 115, 145, 176, 206, 236]  # start 24.44


def test_dense_short_video_clamps_to_the_last_frame():
    assert dense_indices(100, 8, sampling_rate=32, fps=30, target_fps=30, train=False) == [
        0, 36, 72, 99, 99, 99, 99, 99,
    ]  # fmt: skip


def test_dense_train_start_is_uniform_over_delta():
    rng = np.random.default_rng(0)
    starts = [
        dense_indices(356, 8, sampling_rate=32, fps=30, target_fps=30, train=True, rng=rng)[0] for _ in range(400)
    ]
    assert min(starts) < 5 and 95 <= max(starts) <= 100  # delta = 100
    idx = dense_indices(356, 8, sampling_rate=32, fps=30, target_fps=30, train=True, rng=np.random.default_rng(1))
    assert idx[-1] - idx[0] in (254, 255, 256)  # the window spans 255 frames, truncation may drop one


def test_sample_indices_dispatch_and_multi_clip_offsets():
    assert sample_indices("segment", 16, 4, train=False) == [2, 6, 10, 14]
    assert sample_indices("segment", 16, 4, train=False, clip_idx=0, num_clips=2) == [1, 5, 9, 13]
    assert sample_indices("segment", 16, 4, train=False, clip_idx=1, num_clips=2) == [3, 7, 11, 15]
    assert sample_indices("linspace", 10, 4, train=False, clip_idx=1, num_clips=2) == [1, 4, 7, 9]
    assert sample_indices("dense", 300, 8, train=False, sampling_rate=32, fps=30, target_fps=30)[-1] == 255
    with pytest.raises(ValueError, match="sampling 'tsn' is not one of segment, linspace, dense"):
        sample_indices("tsn", 10, 4, train=False)


def test_empty_video_and_zero_frames_are_errors():
    with pytest.raises(ValueError, match="video with 0 frames"):
        segment_indices(0, 8, train=False)
    with pytest.raises(ValueError, match="num_frames=0"):
        linspace_indices(10, 0)
