"""Toy motions: determinism, the time-reversal pair property, an encoding in which no frame is special, layout,
CLI, and generation through build_dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from timesformer_lite.config import load_config
from timesformer_lite.data import build_dataset, read_frames, read_list
from timesformer_lite.data.toy import (
    CLASSES,
    MOTIONS,
    clip_rng,
    generate,
    main,
    make_clip,
    render_motion,
    split_sizes,
    write_mp4,
)


@pytest.fixture(scope="module")
def two_generations(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("toy_a"), tmp_path_factory.mktemp("toy_b")
    generate(a, per_class=2, frames=8, size=32, seed=3, workers=2)
    generate(b, per_class=2, frames=8, size=32, seed=3, workers=1)
    return a, b


def test_same_seed_gives_byte_identical_decoded_frames(two_generations):
    a, b = two_generations
    items = read_list(a / "train.txt") + read_list(a / "test.txt")
    assert len(items) == 40
    for path, _ in items:
        fa, fb = read_frames(a / path, range(8)), read_frames(b / path, range(8))
        assert fa.shape == (8, 32, 32, 3) and np.array_equal(fa, fb)


def test_other_seed_gives_other_clips(tmp_path, two_generations):
    generate(tmp_path, per_class=2, frames=8, size=32, seed=4, workers=1)
    path = "train/move_right/00000.mp4"
    assert not np.array_equal(read_frames(tmp_path / path, [0]), read_frames(two_generations[0] / path, [0]))


def test_layout_lists_and_classes(two_generations):
    a, _ = two_generations
    assert (a / "classes.txt").read_text().split() == list(CLASSES)
    train = read_list(a / "train.txt")
    assert [label for _, label in train] == [c for c in range(10) for _ in range(2)]
    assert train[2] == ("train/move_left/00000.mp4", 1)
    assert len(read_list(a / "val.txt")) == 20  # max(2 // 20, 2) per class
    assert json.loads((a / "toy_meta.json").read_text()) == {
        "recipe": "v6", "per_class": 2, "frames": 8, "size": 32, "seed": 3,
    }  # fmt: skip
    assert split_sizes(1000) == {"train": 1000, "val": 50, "test": 50}


@pytest.mark.parametrize("label", range(10))
def test_odd_classes_are_their_partner_reversed(label):
    even = make_clip(label - label % 2, clip_rng(0, "train", 0, 7))
    clip = make_clip(label, clip_rng(0, "train", 0, 7))
    assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip, even[::-1] if label % 2 else even)


def _shape_columns(clip: np.ndarray) -> np.ndarray:
    """Per-frame x-centre of the pixels that differ from the clip's median frame (the moving shape). (T,)"""
    d = np.abs(clip.astype(float) - np.median(clip, axis=0)).sum(-1) > 60  # (T, H, W); noise sums to ~25
    xs = np.arange(clip.shape[2])
    return np.array([(m.sum(0) * xs).sum() / max(m.sum(), 1) for m in d])


def test_frame_order_invariant_statistics_do_not_separate_a_pair_but_order_does():
    right = [_shape_columns(make_clip(0, clip_rng(1, "train", 0, i))) for i in range(200)]
    left = [_shape_columns(make_clip(1, clip_rng(1, "train", 1, i))) for i in range(200)]
    # order-invariant (what a frame-averaging model can use): where the shape is on average; the same
    # distribution for both classes, so the means agree within sampling noise
    mean_r, mean_l = np.array([c.mean() for c in right]), np.array([c.mean() for c in left])
    se = np.sqrt(mean_r.var() / len(mean_r) + mean_l.var() / len(mean_l))
    assert abs(mean_r.mean() - mean_l.mean()) < 4 * se
    assert abs(np.sort([c.std() for c in right]).mean() - np.sort([c.std() for c in left]).mean()) < 1.0
    # order-sensitive: the direction of travel separates them
    assert np.mean([c[-1] - c[0] > 3 for c in right]) > 0.95
    assert np.mean([c[-1] - c[0] < -3 for c in left]) > 0.95


@pytest.mark.parametrize("motion", MOTIONS)
def test_every_motion_changes_over_time_on_a_noisy_textured_background(motion):
    clip = render_motion(motion, np.random.default_rng(0), frames=8, size=32).astype(float)
    assert np.abs(clip[0] - clip[-1]).mean() > 3  # the shape moved, turned, grew or faded
    still = render_motion(motion, np.random.default_rng(0), frames=8, size=32).astype(float)
    assert np.array_equal(clip, still)
    background_rows = clip[:, :2].std(axis=0).mean()  # pixel noise sigma 0.04 * 255 ~ 10 grey levels
    assert 5 < background_rows < 20


def test_cli_writes_the_dataset_and_reports(tmp_path, capsys):
    assert main([str(tmp_path / "t"), "--per-class", "2", "--frames", "4", "--size", "16", "--seed", "1"]) == 0
    assert "60 clips (20/20/20 train/val/test), 4 frames at 16x16" in capsys.readouterr().out
    assert read_frames(tmp_path / "t/train/grow/00001.mp4", range(4)).shape == (4, 16, 16, 3)
    with pytest.raises(ValueError, match="size=33 must be even"):
        main([str(tmp_path / "u"), "--size", "33"])


def test_build_dataset_generates_toy_data_on_first_use(tmp_path):
    cfg = load_config("smoke", {"data.root": str(tmp_path / "toy"), "data.toy_per_class": 2})
    ds = build_dataset(cfg, "train")
    assert len(ds) == 20 and ds.classes == list(CLASSES)
    item = ds[5]
    assert item["video"].shape == (4, 3, 32, 32) and item["label"] == 2
    meta = (tmp_path / "toy/toy_meta.json").stat().st_mtime_ns
    assert len(build_dataset(cfg, "test")) == 20
    assert (tmp_path / "toy/toy_meta.json").stat().st_mtime_ns == meta  # not regenerated
    cfg3 = load_config("smoke", {"data.root": str(tmp_path / "toy"), "data.toy_per_class": 3})
    with pytest.warns(UserWarning, match="made with other settings; regenerating"):
        assert len(build_dataset(cfg3, "train")) == 30


def test_every_frame_position_decodes_equally_sharp(tmp_path):
    """Issue 20: with a key frame first (recipe v5, crf 23) frame 0 decoded 1.6 dB sharper than the rest, a cue of
    time order that an order-blind model used. Every frame is now coded alike: over 60 clips, the mean PSNR of each
    frame position against the raw render spreads by at most 0.5 dB."""
    psnr = []
    for label in range(len(CLASSES)):
        for index in range(6):
            raw = make_clip(label, clip_rng(0, "test", label, index))
            write_mp4(tmp_path / "clip.mp4", raw)
            decoded = read_frames(tmp_path / "clip.mp4", range(len(raw))).astype(float)
            mse = ((decoded - raw) ** 2).reshape(len(raw), -1).mean(axis=1)  # (T,)
            psnr.append(10 * np.log10(255.0**2 / mse))
    by_position = np.mean(psnr, axis=0)  # (T,)
    assert len(psnr) == 60 and by_position.min() > 24, by_position  # about 26.6 dB: the noise is mostly removed
    assert by_position.max() - by_position.min() <= 0.5, by_position


@pytest.mark.parametrize("label", range(0, 10, 2))
def test_a_clip_encoded_backwards_decodes_to_its_frames_backwards(tmp_path, label):
    """Every frame is intra-coded at one quantiser, so a frame's bytes depend on that frame alone: the codec is
    exactly symmetric in time. With odd classes drawn as their partner reversed, a decoded clip of class 2k + 1 is
    then distributed exactly as a decoded clip of class 2k played backwards: nothing but the order of the content
    tells a pair apart."""
    raw = make_clip(label, clip_rng(0, "train", label, 3))
    write_mp4(tmp_path / "forward.mp4", raw)
    write_mp4(tmp_path / "backward.mp4", np.ascontiguousarray(raw[::-1]))
    forward = read_frames(tmp_path / "forward.mp4", range(8))
    assert np.array_equal(read_frames(tmp_path / "backward.mp4", range(8)), forward[::-1])
    assert not np.array_equal(forward[0], forward[-1])  # the clip moves: the equality is not trivial
