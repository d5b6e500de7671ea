"""`data.cache`: every video decoded once into memory gives exactly the clips decoding on demand gives."""

import os
import warnings

import numpy as np
import torch
from data_fixtures import pattern_frames, write_video

import timesformer_lite as tl
from timesformer_lite.data import build_dataset, read_frames


def make_list_dataset(root, sizes):
    lines = []
    for k, (frames, w, h) in enumerate(sizes):
        write_video(root / f"v{k}.mp4", pattern_frames(frames, w, h, seed=k))
        lines.append(f"v{k}.mp4 {k % 2}\n")
    (root / "broken.mp4").write_bytes(b"not a video at all")
    lines.append("broken.mp4 1\n")
    for split in ("train", "val", "test"):
        (root / f"{split}.txt").write_text("".join(lines))
    (root / "classes.txt").write_text("a\nb\n")


def test_cached_dataset_yields_the_same_clips_as_decoding_and_skips_bad_files(tmp_path):
    make_list_dataset(tmp_path, [(12, 64, 48), (5, 48, 64), (40, 96, 64)])
    base = ["data.dataset=list", f"data.root={tmp_path}", "model.num_classes=2", "data.train_scale=[40, 56]"]
    for split in ("train", "test"):
        plain = build_dataset(tl.load_config("smoke", [*base, "data.cache=false"]), split)
        cached = build_dataset(tl.load_config("smoke", [*base, "data.cache=true", "data.num_crops=3"]), split)
        if split == "test":
            plain = build_dataset(tl.load_config("smoke", [*base, "data.cache=false", "data.num_crops=3"]), split)
        assert cached.cache is not None and plain.cache is None
        assert isinstance(cached.cache[3], str) and "broken.mp4" in cached.cache[3]
        for index in range(3):
            for seed in (0, 7):
                plain.reseed(seed)
                cached.reseed(seed)
                a, b = plain[index], cached[index]
                assert torch.equal(a["video"], b["video"]), (split, index, seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert cached[3] is None
        assert cached.num_skipped == 1 and "broken.mp4" in str(caught[0].message)
    frames, fps = cached.cache[2]
    assert frames.shape == (40, 64, 96, 3) and frames.dtype == np.uint8 and fps > 0


def test_a_second_dataset_reuses_the_decoded_videos_until_a_file_changes(tmp_path, monkeypatch):
    from timesformer_lite.data import datasets

    make_list_dataset(tmp_path, [(12, 64, 48), (5, 48, 64)])
    cfg = tl.load_config("smoke", ["data.dataset=list", f"data.root={tmp_path}", "model.num_classes=2"])
    monkeypatch.setattr(datasets, "DECODED", datasets.DecodedVideos())
    decoded = []
    decode = datasets._decode_all
    monkeypatch.setattr(datasets, "_decode_all", lambda job: decoded.append(job[0]) or decode(job))
    first = build_dataset(cfg, "train")
    assert sorted(decoded) == sorted(str(tmp_path / n) for n in ("v0.mp4", "v1.mp4", "broken.mp4"))
    second = build_dataset(cfg, "val")  # the same three files: nothing decoded again
    assert len(decoded) == 3
    assert second.cache[0][0] is first.cache[0][0] and not first.cache[0][0].flags.writeable
    assert second.cache[2] == first.cache[2] and "broken.mp4" in second.cache[2]
    again = build_dataset(cfg, "train")
    first.reseed(3)
    again.reseed(3)
    assert len(decoded) == 3 and torch.equal(first.load(1), again.load(1))  # read-only frames give the same clips
    write_video(tmp_path / "v1.mp4", pattern_frames(7, 48, 64, seed=9))  # a new file under the old name
    third = build_dataset(cfg, "test")
    assert decoded[3:] == [str(tmp_path / "v1.mp4")] and third.cache[1][0].shape[0] == 7
    datasets.DECODED.max_bytes = third.cache[1][0].nbytes  # room for one video: the older ones go
    datasets.DECODED.put(("other", "auto", 1, 1), "error")
    assert datasets.DECODED.bytes <= datasets.DECODED.max_bytes and len(datasets.DECODED.entries) == 1


def test_a_clip_replaced_by_a_same_size_file_with_its_mtime_kept_is_decoded_again(tmp_path, monkeypatch):
    from timesformer_lite.data import datasets

    monkeypatch.setattr(datasets, "DECODED", datasets.DecodedVideos())
    clip = tmp_path / "v0.avi"  # raw video: two clips of the same size and frame count are the same number of bytes
    write_video(clip, pattern_frames(6, 48, 32, seed=1), codec="rawvideo")
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.txt").write_text("v0.avi 0\n")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    cfg = tl.load_config("smoke", ["data.dataset=list", f"data.root={tmp_path}", "model.num_classes=2"])
    first = build_dataset(cfg, "val").cache[0][0]
    st = clip.stat()
    write_video(clip, pattern_frames(6, 48, 32, seed=2), codec="rawvideo")  # rewritten in place: the same inode
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the old modification time
    assert (clip.stat().st_size, clip.stat().st_mtime_ns, clip.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    second = build_dataset(cfg, "val").cache[0][0]  # was served from the cache: the old frames
    assert np.array_equal(second, read_frames(clip, range(6))) and not np.array_equal(second, first)


def test_the_decoded_videos_can_be_seen_and_cleared(tmp_path, monkeypatch):
    from timesformer_lite.data import DECODED, DecodedVideos, datasets

    assert isinstance(DECODED, DecodedVideos) and DECODED is datasets.DECODED  # one per process, public
    monkeypatch.setattr(datasets, "DECODED", DecodedVideos(max_bytes=2**20))
    make_list_dataset(tmp_path, [(12, 64, 48), (5, 48, 64)])
    cfg = tl.load_config("smoke", ["data.dataset=list", f"data.root={tmp_path}", "model.num_classes=2"])
    cached = build_dataset(cfg, "train").cache
    frames = cached[0][0].nbytes + cached[1][0].nbytes
    errors = len(cached[2])  # broken.mp4 is remembered as its error message
    assert len(datasets.DECODED) == 3 and datasets.DECODED.bytes == frames + errors
    mib = (frames + errors) / 2**20
    assert repr(datasets.DECODED) == f"DecodedVideos(3 videos, {mib:.1f} MiB of at most 1 MiB)"
    datasets.DECODED.clear()
    assert len(datasets.DECODED) == 0 and datasets.DECODED.bytes == 0
    assert np.array_equal(cached[0][0], build_dataset(cfg, "train").cache[0][0])  # decoded again, the same frames
