"""Label files, build_dataset for every split/sampling/crop mode on real mp4s, skip-and-count, build_loader."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
from data_fixtures import pattern_frames, write_video
from safety_fixtures import cli, one_line_error

from timesformer_lite.config import load_config
from timesformer_lite.data import (
    AnnotationError,
    VideoDataset,
    build_dataset,
    build_loader,
    read_classes,
    read_csv_list,
    read_list,
    scan_folder,
    workers_for,
)

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A list dataset of awkward videos: portrait, odd size, long, short, audio, variable frame rate, constant colour."""
    r = tmp_path_factory.mktemp("listdata")
    (r / "v").mkdir()
    write_video(r / "v/portrait.mp4", pattern_frames(40, 64, 90))
    write_video(r / "v/odd.mp4", pattern_frames(20, 97, 55), pix_fmt="yuv444p")
    write_video(r / "v/long.mp4", pattern_frames(300, 48, 36), fps=30, keyint=50)
    write_video(r / "v/short.mp4", pattern_frames(3, 64, 48))
    write_video(r / "v/audio.mp4", pattern_frames(16, 72, 40), audio=True)
    write_video(r / "v/vfr.mp4", pattern_frames(8, 64, 48), pts_ms=[0, 40, 120, 130, 300, 310, 320, 500])
    const = np.zeros((6, 48, 64, 3), np.uint8) + np.array([200, 100, 50], np.uint8)
    write_video(r / "v/const.mp4", const, pix_fmt="yuv444p")
    (r / "v/broken.mp4").write_text("not a video")
    good = ["portrait", "odd", "long", "short", "audio", "vfr", "const"]
    (r / "train.txt").write_text("".join(f"v/{n}.mp4 {i % 3}\n" for i, n in enumerate(good)))
    (r / "val.txt").write_text("".join(f"v/{n}.mp4 {i % 3}\n" for i, n in enumerate(good)))
    (r / "test.txt").write_text("v/const.mp4 2\nv/broken.mp4 1\nv/short.mp4 0\n")
    (r / "classes.txt").write_text("a\nb\nc\n")
    return r


def config(root, **over):
    base = {
        "data.dataset": "list",
        "data.root": str(root),
        "data.train_scale": [36, 44],
        "data.test_scale": 36,
        "data.hflip": True,
        "data.mean": [0.45, 0.45, 0.45],
        "data.std": [0.225, 0.225, 0.225],
        "model.num_frames": 4,
        "model.img_size": 32,
    }
    base.update(over)
    return load_config("smoke", base)


@pytest.mark.parametrize("sampling", ["segment", "linspace", "dense"])
def test_train_and_val_items_are_normalised_clips(root, sampling):
    cfg = config(root, **{"data.train_sampling": sampling, "data.test_sampling": sampling, "data.sampling_rate": 4})
    for split in ("train", "val"):
        ds = build_dataset(cfg, split)
        assert ds.classes == CLASSES and len(ds) == 7 and ds.labels == [0, 1, 2, 0, 1, 2, 0]
        for i in range(len(ds)):
            item = ds[i]
            assert item["video"].shape == (4, 3, 32, 32) and item["video"].dtype == torch.float32
            assert (item["label"], item["index"]) == (ds.labels[i], i)
            assert torch.isfinite(item["video"]).all()
        assert ds.num_skipped == 0


@pytest.mark.parametrize("clips,crops", [(1, 1), (1, 3), (2, 3), (3, 1)])
def test_test_split_stacks_clips_times_crops_views(root, clips, crops):
    cfg = config(root, **{"data.num_clips": clips, "data.num_crops": crops, "data.test_sampling": "dense"})
    ds = build_dataset(cfg, "test")
    with pytest.warns(RuntimeWarning, match="broken.mp4"):
        items = [ds[i] for i in range(len(ds))]
    assert items[1] is None and ds.num_skipped == 1
    assert items[0]["video"].shape == (clips * crops, 4, 3, 32, 32)
    # constant colour (200, 100, 50): every view holds the normalised colour (H.264 4:4:4 keeps it within 2 levels)
    expected = (torch.tensor([200, 100, 50]) / 255 - 0.45) / 0.225
    assert torch.allclose(items[0]["video"].mean(dim=(0, 1, 3, 4)), expected, atol=2 / 255 / 0.225)


def test_val_is_deterministic_and_train_is_reproducible_per_seed(root):
    cfg = config(root)
    val = build_dataset(cfg, "val")
    assert torch.equal(val[0]["video"], val[0]["video"])
    a, b = build_dataset(cfg, "train"), build_dataset(cfg, "train")
    first = [a[0]["video"] for _ in range(3)]
    assert all(torch.equal(x, b[0]["video"]) for x in first[:1])
    assert not torch.equal(first[0], first[1])  # a new draw on every access


def test_loader_drops_unreadable_items_and_counts_them(root):
    ds = build_dataset(config(root, **{"data.num_crops": 3}), "test")
    for workers in (0, 2):
        loader = build_loader(ds, 2, shuffle=False, num_workers=workers, seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            batches = list(loader)
        assert sum(b["skipped"] for b in batches) == 1
        assert torch.cat([b["index"] for b in batches]).tolist() == [0, 2]
        assert batches[0]["video"].shape == (1, 3, 4, 3, 32, 32) and batches[0]["label"].tolist() == [2]


def test_all_bad_batch_is_empty_not_an_error(root):
    ds = build_dataset(config(root), "test")
    batch = build_loader(torch.utils.data.Subset(ds, [1]), 4, shuffle=False, num_workers=0, seed=0)
    with pytest.warns(RuntimeWarning):
        (b,) = list(batch)
    assert b["skipped"] == 1 and b["label"].numel() == 0


def test_loader_is_reproducible_and_independent_of_worker_count(root):
    cfg = config(root)
    runs = [list(build_loader(build_dataset(cfg, "train"), 3, shuffle=True, num_workers=w, seed=5)) for w in (2, 0)]
    for x, y in zip(*runs):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["video"], y["video"])
    other = list(build_loader(build_dataset(cfg, "train"), 3, shuffle=True, num_workers=0, seed=6))
    assert any(not torch.equal(x["video"], y["video"]) for x, y in zip(runs[0], other))
    assert sorted(torch.cat([b["index"] for b in runs[0]]).tolist()) == list(range(7))


def test_distributed_loader_has_an_epoch_sampler(root, tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        loader = build_loader(
            build_dataset(config(root), "val"), 4, shuffle=True, num_workers=0, seed=0, distributed=True
        )
        orders = []
        for epoch in (0, 1):
            loader.sampler.set_epoch(epoch)
            orders.append(torch.cat([b["index"] for b in loader]).tolist())
        assert sorted(orders[0]) == sorted(orders[1]) == list(range(7)) and orders[0] != orders[1]
    finally:
        dist.destroy_process_group()


def test_list_file_errors_name_file_and_line(tmp_path):
    (tmp_path / "l.txt").write_text("a.mp4 0\nb.mp4\n")
    with pytest.raises(AnnotationError, match=r"l.txt:2: expected 'relative/path label', got 'b.mp4'"):
        read_list(tmp_path / "l.txt")
    (tmp_path / "l.txt").write_text("a.mp4 0\n\nb b.mp4 7\n")
    with pytest.raises(AnnotationError, match=r"l.txt:3: label 7 is outside 0..2 \(3 classes\)"):
        read_list(tmp_path / "l.txt", CLASSES)
    (tmp_path / "c.txt").write_text("a\nb\na\n")
    with pytest.raises(AnnotationError, match=r"class 'a' is listed twice \(lines 1 and 3\)"):
        read_classes(tmp_path / "c.txt")
    with pytest.raises(AnnotationError, match="label file .*nope.txt' does not exist"):
        read_list(tmp_path / "nope.txt")


def test_list_paths_may_hold_spaces_and_csv_accepts_names(tmp_path):
    (tmp_path / "l.txt").write_text("# comment\nmy clips/a b.mp4 1\n")
    assert read_list(tmp_path / "l.txt") == [("my clips/a b.mp4", 1)]
    (tmp_path / "l.csv").write_text("path,label\nx.mp4,c\ny.mp4,0\n")
    assert read_csv_list(tmp_path / "l.csv", CLASSES) == [("x.mp4", 2), ("y.mp4", 0)]
    (tmp_path / "bad.csv").write_text("x.mp4,zebra\n")
    with pytest.raises(AnnotationError, match=r"bad.csv:1: label 'zebra' is not an integer or a class name"):
        read_csv_list(tmp_path / "bad.csv", CLASSES)


def test_csv_and_folder_datasets(tmp_path):
    clip = pattern_frames(8, 64, 48)
    for split, cls in (("train", "cat"), ("train", "dog"), ("test", "dog")):
        write_video(tmp_path / split / cls / "x.mp4", clip) if (tmp_path / split / cls).mkdir(
            parents=True
        ) is None else None
    items, classes = scan_folder(tmp_path, "val")
    assert classes == ["cat", "dog"] and items == [("test/dog/x.mp4", 1)]
    ds = build_dataset(config(tmp_path, **{"data.dataset": "folder", "data.classes": ""}), "train")
    assert ds.labels == [0, 1] and ds[1]["video"].shape == (4, 3, 32, 32)
    (tmp_path / "train.csv").write_text("path,label\ntrain/dog/x.mp4,dog\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    ds = build_dataset(config(tmp_path, **{"data.dataset": "csv", "data.train_list": "train.csv"}), "train")
    assert ds.labels == [1] and ds.classes == ["cat", "dog"]


def test_wrong_root_and_unknown_names_are_clear(root, tmp_path):
    (tmp_path / "train.txt").write_text("v/portrait.mp4 0\n")
    (tmp_path / "classes.txt").write_text("a\n")
    with pytest.raises(
        AnnotationError, match="first video .*portrait.mp4' does not exist; data.root=.* is probably wrong"
    ):
        build_dataset(config(tmp_path), "train")
    with pytest.raises(ValueError, match="split 'dev' is not one of train, val, test"):
        build_dataset(config(root), "dev")
    with pytest.raises(ValueError, match="data.dataset='imagenet' is not one of"):
        build_dataset(config(root, **{"data.dataset": "imagenet"}), "train")


def test_video_dataset_refuses_multi_view_training(root):
    ds = build_dataset(config(root), "train")
    with pytest.raises(ValueError, match="training clips are single views"):
        VideoDataset(root, ds.items, ds.classes, num_frames=4, transform=ds.transform, num_clips=2)


def test_auto_workers_are_none_on_cpu_and_one_per_spare_core_on_a_gpu(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert workers_for(3, "cuda") == 3 and workers_for(0, "cpu") == 0  # a number is taken as it is
    assert workers_for("auto", "cpu") == 0  # the model's threads use the cores
    assert workers_for("auto", torch.device("cuda:0")) == 8  # 15 spare cores, at most 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes share the 16 cores
    assert workers_for("auto", "cuda") == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert workers_for("auto", "cuda") == 1  # never 0 on a GPU


def test_a_list_file_that_is_not_utf8_is_one_line_naming_the_file_and_line(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "classes.txt").write_text("a\nb\n")
    (root / "train.txt").write_bytes("ok.mp4 0\ncaf\u00e9.mp4 1\n".encode("latin-1"))  # \xe9: not UTF-8
    with pytest.raises(AnnotationError, match=r"train.txt:2: is not UTF-8 text \(byte 0xe9\); save the file as UTF-8"):
        read_list(root / "train.txt")
    args = ["--config", "smoke", "data.dataset=list", f"data.root={root}", "model.num_classes=2"]
    done = cli("train", *args, f"train.out_dir={tmp_path / 'runs'}")
    assert done.returncode == 2
    line = one_line_error(done.stderr)  # was "'utf-8' codec can't decode byte 0xe9 in position 13", no file named
    assert line.endswith(f"error: {root / 'train.txt'}:2: is not UTF-8 text (byte 0xe9); save the file as UTF-8")
