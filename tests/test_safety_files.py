"""Issue 16, defects 4 and 5: nothing of the user's is deleted or overwritten, a run folder has one owner,
leftovers of killed writes are removed, a failed save never duplicates an epoch line, and `--explain`
outputs of videos with the same file name do not overwrite each other."""

from __future__ import annotations

import errno
import json
import os

import pytest
from safety_fixtures import cli, one_line_error, smoke_args, smoke_data, tiny_model, toy_clip

import timesformer_lite as tl
from timesformer_lite.cli import main
from timesformer_lite.data.toy import ensure_toy_data, foreign_files
from timesformer_lite.train import run
from timesformer_lite.train import trainer as trainer_module
from timesformer_lite.train.run_folder import RunFolder

TOY = dict(per_class=1, frames=2, size=16, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return smoke_data(tmp_path_factory.mktemp("smoke"))


def test_toy_data_never_deletes_a_folder_with_the_users_files(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match=r"'.*mine' is not empty and holds no toy data \(first: thesis.tex\)"):
        ensure_toy_data(root, **TOY)
    assert (root / "thesis.tex").read_text() == "years of work"


def test_toy_data_made_with_other_settings_is_regenerated_only_when_the_folder_holds_nothing_else(tmp_path):
    root = tmp_path / "toy"
    assert ensure_toy_data(root, **TOY)
    assert foreign_files(root) == []
    (root / "notes.txt").write_text("keep me")
    (root / "train" / "grow" / "extra.mp4").write_bytes(b"mine")
    with pytest.raises(ValueError, match=r"files the generator did not write \(notes.txt, train/grow/extra.mp4\)"):
        ensure_toy_data(root, **{**TOY, "seed": 1})
    assert (root / "notes.txt").read_text() == "keep me" and (root / "train" / "grow" / "extra.mp4").is_file()
    (root / "notes.txt").unlink()
    (root / "train" / "grow" / "extra.mp4").unlink()
    with pytest.warns(UserWarning, match="made with other settings; regenerating"):
        assert ensure_toy_data(root, **{**TOY, "seed": 1})
    assert json.loads((root / "toy_meta.json").read_text())["seed"] == 1


def test_the_toy_data_command_refuses_a_folder_with_the_users_lists_and_rewrites_its_own(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "train.txt").write_text("my/video.mp4 3\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    args = ["toy-data", str(root), "--per-class", "1", "--frames", "2", "--size", "16", "--workers", "1"]
    done = cli(*args)
    assert done.returncode == 2  # it overwrote both files before, where ensure_toy_data leaves such a folder alone
    line = one_line_error(done.stderr)
    assert f"'{root}' holds files the toy generator did not write (classes.txt, train.txt)" in line
    assert (root / "train.txt").read_text() == "my/video.mp4 3\n" and (root / "classes.txt").read_text() == "cat\ndog\n"
    toy = tmp_path / "toy"
    assert ensure_toy_data(toy, **TOY) and main(args[:1] + [str(toy)] + args[2:]) == 0  # its own output: rewritten
    assert foreign_files(toy) == []


def test_a_second_training_in_a_run_folder_in_use_fails_at_once_in_one_line(data, tmp_path):
    holder = RunFolder(tmp_path / "runs" / "smoke")  # this test process is the first training
    try:
        proc = cli("train", *smoke_args(data, tmp_path / "runs"), timeout=90)
    finally:
        holder.close()
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert f"is in use by another training (process {os.getpid()})" in line and "train.name" in line
    assert sorted(p.name for p in (tmp_path / "runs" / "smoke").iterdir()) == [".lock"]


def test_train_name_cannot_write_outside_out_dir(data, tmp_path):
    proc = cli("train", *smoke_args(data, tmp_path / "a" / "runs", "train.name=../../escaped"), timeout=60)
    assert proc.returncode == 2 and "train.name='../../escaped'" in one_line_error(proc.stderr)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "a").exists()


def test_resume_after_a_config_change_is_refused_and_leaves_config_yaml_and_cleans_leftovers(data, tmp_path):
    args = smoke_args(data, tmp_path, "train.test=false")[2:]
    first = run("smoke", args)
    before = (first.run_dir / "config.yaml").read_text()
    leftover = first.run_dir / ".last.pt.k1ll3d.tmp"  # what a kill during atomic_write leaves
    leftover.write_bytes(bytes(1000))
    with pytest.raises(ValueError, match=r"cannot resume from .*last.pt.*model.depth: 2 -> 3.*another train.name"):
        run("smoke", [*args, "model.depth=3", "train.resume=auto"])
    assert (first.run_dir / "config.yaml").read_text() == before
    assert not leftover.exists()


def test_a_failed_save_then_a_resume_writes_each_epoch_line_once(data, tmp_path, monkeypatch):
    args = smoke_args(data, tmp_path, "train.test=false", "train.epochs=2")[2:]
    real_save = trainer_module.save_checkpoint

    def full_disk_at_epoch_2(obj, path):
        if path.name == "last.pt" and obj["epoch"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path)

    monkeypatch.setattr(trainer_module, "save_checkpoint", full_disk_at_epoch_2)
    with pytest.raises(OSError, match="No space left"):
        run("smoke", args)
    metrics = tmp_path / "smoke" / "metrics.jsonl"
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    resumed = run("smoke", [*args, "train.resume=auto"])
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]
    assert [r["epoch"] for r in resumed.history] == [1, 2]


def test_explain_outputs_of_videos_with_the_same_file_name_do_not_overwrite_each_other(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_model()
    a, b = (
        toy_clip(tmp_path / "videos" / "a" / "x.mp4", label=0),
        toy_clip(tmp_path / "videos" / "b" / "x.mp4", label=2),
    )
    tl.predict(tmp_path / "videos", model, views="1x1", explain="out")
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*"))
    assert written == ["a/x.mp4.gif", "a/x.mp4.png", "b/x.mp4.gif", "b/x.mp4.png"]
    assert (tmp_path / "out" / "a" / "x.mp4.gif").read_bytes() != (tmp_path / "out" / "b" / "x.mp4.gif").read_bytes()
    assert a.is_file() and b.is_file()
