"""Tensor transforms: shapes, crop positions, flip, normalisation numbers, the train/val/test pipelines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from timesformer_lite.data import (
    ClipTransform,
    center_crop,
    hflip,
    normalize,
    random_crop,
    resize_short_side,
    to_float,
    uniform_crops,
)
from timesformer_lite.data.transforms import short_side_size


def coords(t: int, h: int, w: int) -> torch.Tensor:
    """(T, C, H, W) whose channel 0 is the row, channel 1 the column, channel 2 the frame index."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([torch.stack([y, x, torch.full_like(y, i)]) for i in range(t)]).float()


def test_to_float_reorders_and_scales():
    frames = np.zeros((2, 4, 5, 3), np.uint8)
    frames[1, 2, 3] = [255, 51, 0]
    x = to_float(frames)
    assert x.shape == (2, 3, 4, 5) and x.dtype == torch.float32
    assert x[1, :, 2, 3].tolist() == pytest.approx([1.0, 0.2, 0.0])
    with pytest.raises(ValueError, match=r"expected uint8 frames \(T, H, W, C\)"):
        to_float(np.zeros((4, 5, 3), np.uint8))


def test_short_side_resize_floors_the_long_side():
    assert short_side_size(256, 340, 224) == (224, 297)
    assert short_side_size(340, 256, 224) == (297, 224)
    assert resize_short_side(torch.zeros(2, 3, 256, 340), 224).shape == (2, 3, 224, 297)
    const = torch.full((1, 3, 10, 20), 0.3)
    assert torch.allclose(resize_short_side(const, 33), torch.full((1, 3, 33, 66), 0.3))


def test_center_crop_puts_the_odd_pixel_before():
    x = coords(1, 7, 10)
    c = center_crop(x, 4)
    assert (c[0, 0, 0, 0].item(), c[0, 1, 0, 0].item()) == (2, 3)  # ceil(3/2)=2, ceil(6/2)=3


def test_uniform_crops_along_the_long_side():
    land = uniform_crops(coords(1, 4, 10), 4)
    assert [int(c[0, 1, 0, 0]) for c in land] == [0, 3, 6]  # left, centre, right columns
    assert all(int(c[0, 0, 0, 0]) == 0 for c in land)
    port = uniform_crops(coords(1, 11, 4), 4)
    assert [int(c[0, 0, 0, 0]) for c in port] == [0, 4, 7]  # top, centre (ceil 3.5), bottom rows
    assert all(c.shape == (1, 3, 4, 4) for c in land + port)


def test_random_crop_is_the_same_window_for_every_frame_and_covers_all_offsets():
    x = coords(3, 6, 8)
    rng = np.random.default_rng(0)
    tops, lefts = set(), set()
    for _ in range(300):
        c = random_crop(x, 4, rng)
        assert torch.equal(c[0, :2], c[2, :2])
        tops.add(int(c[0, 0, 0, 0]))
        lefts.add(int(c[0, 1, 0, 0]))
    assert tops == {0, 1, 2} and lefts == {0, 1, 2, 3, 4}


def test_hflip_and_normalize_numbers():
    x = coords(1, 2, 3)
    assert hflip(x)[0, 1, 0].tolist() == [2, 1, 0]
    y = normalize(torch.full((2, 3, 1, 1), 0.9), [0.45, 0.45, 0.45], [0.225, 0.225, 0.225])
    assert torch.allclose(y, torch.full_like(y, 2.0))


def video(t=4, h=40, w=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_train_transform_shape_range_and_reproducibility():
    tf = ClipTransform(crop_size=32, train=True, scale=(36, 48), hflip=True)
    a = tf(video(), np.random.default_rng(3))
    b = tf(video(), np.random.default_rng(3))
    assert a.shape == (1, 4, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= -2.0 - 1e-5 and a.max() <= (1 - 0.45) / 0.225 + 1e-5


def test_train_flip_only_when_enabled():
    # a left-dark/right-bright video: flipped crops have a bright left column
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    frames[..., 16:, :] = 255
    for flip, expected in ((True, {0.0, 1.0}), (False, {0.0})):
        tf = ClipTransform(crop_size=32, train=True, scale=(32, 32), hflip=flip, mean=[0] * 3, std=[1] * 3)
        rng = np.random.default_rng(0)
        seen = {float(tf(frames, rng)[0, 0, 0, 0, 0]) for _ in range(40)}
        assert seen == expected


def test_eval_transforms_centre_and_uniform_crop():
    frames = np.full((3, 48, 64, 3), 200, np.uint8)
    one = ClipTransform(crop_size=32, train=False, scale=(40, 40), num_crops=1)(frames)
    three = ClipTransform(crop_size=32, train=False, scale=(40, 40), num_crops=3)(frames)
    assert one.shape == (1, 3, 3, 32, 32) and three.shape == (3, 3, 3, 32, 32)
    assert torch.allclose(three, torch.full_like(three, (200 / 255 - 0.45) / 0.225), atol=1e-5)
    # the middle UniformCrop view is the centre crop
    rand = video(3, 48, 64, seed=1)
    c1 = ClipTransform(crop_size=32, train=False, scale=(40, 40), num_crops=1)(rand)
    c3 = ClipTransform(crop_size=32, train=False, scale=(40, 40), num_crops=3)(rand)
    assert torch.equal(c1[0], c3[1]) and not torch.equal(c3[0], c3[2])


def test_short_side_never_below_the_crop_and_bad_settings():
    out = ClipTransform(crop_size=32, train=False, scale=(16, 16))(video(2, 20, 30))
    assert out.shape == (1, 2, 3, 32, 32)
    with pytest.raises(ValueError, match="num_crops=2"):
        ClipTransform(crop_size=32, train=False, num_crops=2)
    with pytest.raises(ValueError, match="needs an rng"):
        ClipTransform(crop_size=32, train=True)(video())


def test_large_clips_are_made_float_a_few_frames_at_a_time_with_the_same_numbers(monkeypatch):
    from timesformer_lite.data import transforms

    frames = video(7, 61, 83, seed=5)
    whole = resize_short_side(to_float(frames), 40)
    pipelines = [ClipTransform(crop_size=32, train=True, scale=(36, 48)), ClipTransform(32, False, (40, 40), 3)]
    before = [tf(frames, np.random.default_rng(1)) for tf in pipelines]
    chunks = []
    real = transforms.to_float
    monkeypatch.setattr(transforms, "to_float", lambda x: chunks.append(len(x)) or real(x))
    monkeypatch.setattr(transforms, "FLOAT_CHUNK_BYTES", 2 * 61 * 83 * 3 * 4)  # two frames of float per chunk
    assert torch.equal(transforms.resized_float(frames, 40), whole) and chunks == [2, 2, 2, 1]  # bit for bit
    assert all(torch.equal(tf(frames, np.random.default_rng(1)), b) for tf, b in zip(pipelines, before))
