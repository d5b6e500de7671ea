"""Issue 16, defect 6: every user-facing failure is one line naming the thing and the fix, exit non-zero;
Ctrl-C in training says where the run can resume from."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safety_fixtures import ROOT, cli, one_line_error, outcome, smoke_args, smoke_data, tiny_model, toy_clip

import timesformer_lite as tl
from timesformer_lite.cli import main
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


def test_ctrl_c_during_training_says_where_to_resume_from(tmp_path):
    data = smoke_data(tmp_path / "data")
    args = smoke_args(data, tmp_path / "runs", "train.epochs=200", "train.checkpoint_every=1", "train.test=false")
    proc = subprocess.Popen(
        [sys.executable, "-m", "timesformer_lite", "train", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = tmp_path / "runs" / "smoke" / "last.pt"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and not last.exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    line = one_line_error(err)
    assert line.startswith("timesformer-lite train: interrupted: interrupted at epoch ")
    assert f"resume from '{last}'" in line and "train.resume=auto" in line
    saved = torch.load(last, weights_only=True)
    assert f"(epoch {saved['epoch'] + 1}, step {saved['step_in_epoch']}/2)" in line
    assert json.loads(json.dumps(tl.load_config(saved["config"]).to_dict()))["train"]["epochs"] == 200


def test_a_ctrl_c_inside_a_checkpoint_write_stops_after_the_write(tmp_path, monkeypatch):
    """The Ctrl-C above can land inside torch.save, whose C++ writer calls the Python file's write. Raised there,
    it came out as torch's RuntimeError ("unexpected pos") or aborted the process from the writer's destructor
    ("write to closed file") instead of stopping the run cleanly."""
    from timesformer_lite.train import checkpoint

    write, writes = checkpoint._Writes.write, []

    def write_then_ctrl_c(self, data):
        writes.append(len(data))
        if len(writes) == 3:
            signal.raise_signal(signal.SIGINT)  # delivered while torch.save is mid-file
        return write(self, data)

    monkeypatch.setattr(checkpoint._Writes, "write", write_then_ctrl_c)
    path = tmp_path / "last.pt"

    def save():
        with checkpoint.interrupts_deferred():
            checkpoint.save_checkpoint({"x": torch.arange(1000), "y": torch.arange(10)}, path)
            (tmp_path / "recorded").touch()  # what the trainer records after the write still happens

    result = outcome(save)  # in a child: without the deferral it aborts
    assert result["type"] == "KeyboardInterrupt", result  # the Ctrl-C is not lost, only held
    assert (tmp_path / "recorded").exists() and torch.equal(torch.load(path)["x"], torch.arange(1000))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # this process's handler is untouched


def test_a_model_saved_for_sharing_still_predicts(bad, tmp_path, capsys):
    model = tiny_model()
    path = save_model(tmp_path / "ok.safetensors", model)
    assert main(["predict", str(bad[1]), "--checkpoint", str(path), "--top-k", "2"]) == 0
    assert "  2. class_" in capsys.readouterr().out
