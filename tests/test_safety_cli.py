"""Issue 16, defect 6: every user-facing failure is one line naming the thing and the fix, exit non-zero;
Ctrl-C in training says where the run can resume from."""

from __future__ import annotations

import errno
import subprocess

import pytest
import torch
from process_fixtures import cli_command, started, user_env
from safety_fixtures import cli, one_line_error, smoke_args, smoke_data, tiny_model, toy_clip

import timesformer_lite as tl
from timesformer_lite.cli import main
from timesformer_lite.utils import pick_device
from timesformer_lite.weights import save_model


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    good = root / "good.pt"
    model = tiny_model()
    torch.save({"format": "timesformer_lite", "version": 1, "model": model.state_dict(), "config": {}}, good)
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 2], "empty": b"", "text": b"hello, I am a text file\n"}
    paths = {name: root / f"{name}.pt" for name in files}
    for name, content in files.items():
        paths[name].write_bytes(content)
    return paths, toy_clip(root / "clip.mp4")


@pytest.mark.parametrize("kind", ["truncated", "empty", "text"])
@pytest.mark.parametrize("command", ["predict", "test", "convert", "export"])
def test_a_damaged_checkpoint_is_one_line_for_every_command(bad, tmp_path, capsys, command, kind):
    paths, clip = bad
    ckpt = str(paths[kind])
    argv = {
        "predict": ["predict", str(clip), "--checkpoint", ckpt],
        "test": ["test", "--checkpoint", ckpt],
        "convert": ["convert", ckpt, str(tmp_path / "out.safetensors")],
        "export": ["export", "--format", "torchscript", "--checkpoint", ckpt, "--out", str(tmp_path / "m.pt")],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert one_line_error(err).startswith(f"timesformer-lite {command}: error: '{ckpt}'")


def test_the_real_cli_prints_one_line_for_a_truncated_checkpoint(bad):
    paths, clip = bad
    proc = cli("predict", str(clip), "--checkpoint", str(paths["truncated"]), timeout=60)
    assert proc.returncode == 2
    assert "is not a readable torch file" in one_line_error(proc.stderr)


@pytest.mark.parametrize("content", ["[1, 2]", "null"])
def test_a_hugging_face_folder_whose_config_json_is_not_an_object_is_one_line(bad, tmp_path, capsys, content):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(content)
    assert main(["predict", str(bad[1]), "--checkpoint", str(folder)]) == 2
    assert "not an object of settings" in one_line_error(capsys.readouterr().err)


def test_our_safetensors_without_config_metadata_is_one_line(bad, tmp_path, capsys):
    from safetensors.torch import save_file

    path = tmp_path / "noconfig.safetensors"
    save_file({"x": torch.zeros(1)}, path, metadata={"format": "timesformer_lite", "version": "1"})
    assert main(["predict", str(bad[1]), "--checkpoint", str(path)]) == 2
    assert "has no 'config' metadata" in one_line_error(capsys.readouterr().err)


def test_an_out_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "runs").write_text("a file")
    assert main(["train", *smoke_args(tmp_path / "data", tmp_path / "runs")]) == 2
    assert "is a file; set train.out_dir" in one_line_error(capsys.readouterr().err)


def _mount_tmpfs(path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs: room for config.yaml and metrics, not for a checkpoint (or None where mount is refused)."""
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "size=96k")
    yield disk if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_one_line_naming_the_file_and_the_fix(tmp_path, tiny_disk, capsys, monkeypatch):
    data = smoke_data(tmp_path / "data")
    if tiny_disk is not None:
        proc = cli("train", *smoke_args(data, tiny_disk, "train.test=false"), timeout=120)
        assert proc.returncode == 2
        line = one_line_error(proc.stderr)
    else:  # no mount here: the disk fills up inside torch.save
        from timesformer_lite.train import checkpoint

        def full(obj, path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(checkpoint.torch, "save", full)
        assert main(["train", *smoke_args(data, tmp_path / "runs", "train.test=false")]) == 2
        line = one_line_error(capsys.readouterr().err)
    assert "No space left on device" in line and ".pt'" in line and "free space" in line


def test_a_read_only_out_dir_is_one_line(tmp_path, capsys):
    ro = tmp_path / "ro"
    if _mount_tmpfs(ro, "ro,size=64k"):
        try:
            assert main(["train", *smoke_args(tmp_path / "data", ro)]) == 2
        finally:
            subprocess.run(["umount", "-l", str(ro)], check=False)
        assert "set train.out_dir to a folder you can write" in one_line_error(capsys.readouterr().err)
    else:  # no mount (and root ignores file modes): a PermissionError from the file system, simulated
        pytest.fail("mount -t tmpfs is refused here; give this test another read-only folder")


def test_a_model_saved_for_sharing_still_predicts(bad, tmp_path, capsys):
    model = tiny_model()
    path = save_model(tmp_path / "ok.safetensors", model)
    assert main(["predict", str(bad[1]), "--checkpoint", str(path), "--top-k", "2"]) == 0
    assert "  2. class_" in capsys.readouterr().out


def test_train_resume_takes_a_run_folder_and_says_what_to_pass_otherwise(tmp_path, capsys):
    data = smoke_data(tmp_path / "data")
    runs = tmp_path / "runs"
    assert main(["train", *smoke_args(data, runs, "train.test=false")]) == 0
    last = runs / "smoke" / "last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    # the folder, as a user copies it from the line `train` printed; train.epochs and train.device change later
    # steps' numbers (the cosine schedule is longer, another device rounds differently): accepted, and said
    more = smoke_args(
        data, runs, "train.test=false", "train.epochs=2", "train.device=auto", f"train.resume={last.parent}"
    )
    proc = cli("train", *more, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from {last}: epoch 2, step 0/2" in proc.stdout
    assert "resuming with train.device: 'cpu' -> 'auto' (another device's kernels round differently)" in proc.stdout
    assert "resuming with train.epochs: 1 -> 2 (the cosine schedule's length" in proc.stdout
    assert torch.load(last, weights_only=True)["epoch"] == 2
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    for resume, message in [
        (tmp_path / "empty", f"train.resume='{tmp_path / 'empty'}' is a folder without last.pt; pass a run folder"),
        (tmp_path / "nowhere", f"train.resume='{tmp_path / 'nowhere'}' does not exist; pass a checkpoint file"),
    ]:
        assert main(["train", *smoke_args(data, runs, f"train.resume={resume}", "train.name=other")]) == 2
        assert message in one_line_error(capsys.readouterr().err)
    assert not (runs / "other" / "config.yaml").exists()  # refused before the run folder is written


def test_predict_on_a_device_that_is_not_here_names_the_option_the_user_gave(bad, tmp_path, monkeypatch):
    path = save_model(tmp_path / "m.safetensors", tiny_model())
    clip = str(bad[1])
    env = user_env(CUDA_VISIBLE_DEVICES="")  # no GPU, also on a machine that has one
    with started(cli_command("predict", clip, "--checkpoint", str(path), "--device", "cuda"), env=env) as child:
        code, _, err = child.finish(timeout=120)
    assert code == 2
    assert one_line_error(err) == (
        "timesformer-lite predict: error: --device cuda: no CUDA GPU is visible here; use --device cpu or --device auto"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device='cuda:1': no CUDA GPU is visible here; use device='cpu' or"):
        tl.predict(clip, path, device="cuda:1")
    with pytest.raises(ValueError, match=r"^train.device=mps: Apple's MPS is not available here; use train.device=cpu"):
        pick_device("mps")
