"""Export to ONNX and TorchScript: parity with PyTorch at batch sizes other than the traced one, and the CLI."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from safety_fixtures import cli, one_line_error
from test_safety_cli import _mount_tmpfs
from torch import Tensor, nn

import timesformer_lite as tl
from timesformer_lite import export
from timesformer_lite.cli import main
from timesformer_lite.export import ExportError, ExportParityError, export_model
from timesformer_lite.weights import save_model

TINY = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)


def tiny(attention_type: str = "divided_space_time") -> tl.TimeSformer:
    torch.manual_seed(0)
    model = tl.TimeSformer(**TINY, attention_type=attention_type, init_std=0.2)
    for blk in model.blocks:  # the added steps start at zero: make them count
        for name, p in blk.named_parameters():
            if "_fc" in name:
                nn.init.normal_(p, std=0.2)
    return model


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_onnx_export_matches_pytorch_at_batch_1_and_3(tmp_path, attention_type):
    model = tiny(attention_type).train()
    report = export_model(model, tmp_path / "m.onnx", "onnx")
    assert model.training  # the caller's mode is restored
    assert sorted(report.max_abs_diff) == [1, 3] and max(report.max_abs_diff.values()) <= 1e-4
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [4, 3, 32, 32]
    assert not (tmp_path / "m.onnx.data").exists()  # small models are one file
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    video = torch.randn(5, 4, 3, 32, 32)
    with torch.no_grad():
        expected = model.eval()(video)
    torch.testing.assert_close(
        torch.from_numpy(session.run(None, {"video": video.numpy()})[0]), expected, atol=1e-4, rtol=0
    )


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_torchscript_export_matches_pytorch_at_batch_1_and_3(tmp_path, attention_type):
    model = tiny(attention_type)
    report = export_model(model, tmp_path / "m.pt", "torchscript", num_frames=2, img_size=24)
    assert report.input_shape == (2, 3, 24, 24) and max(report.max_abs_diff.values()) <= 1e-4
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    video = torch.randn(4, 2, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video), model.eval()(video), atol=1e-4, rtol=0)


class BakesTheBatch(nn.Module):
    """A model whose Python branch on the batch size a trace freezes: exactly what the parity check must catch."""

    def __init__(self, model: tl.TimeSformer) -> None:
        super().__init__()
        self.model, self.cfg = model, model.cfg

    def forward(self, video: Tensor) -> Tensor:
        logits = self.model(video)
        return logits + 1.0 if video.shape[0] == 2 else logits


def test_an_export_that_disagrees_with_pytorch_is_an_error_and_leaves_the_last_good_export(tmp_path):
    export_model(tiny(), tmp_path / "m.pt", "torchscript")
    good = (tmp_path / "m.pt").read_bytes()
    with pytest.raises(
        ExportParityError, match=r"differs from PyTorch by 1.00e\+00 > tolerance 1e-04 \('.*m.pt' is left"
    ):
        export_model(BakesTheBatch(tiny()), tmp_path / "m.pt", "torchscript")
    assert (tmp_path / "m.pt").read_bytes() == good  # the last good export is untouched
    kept = torch.jit.load(str(tmp_path / "m.pt.failed" / "m.pt"))  # the failed one is kept for inspection
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert (kept(video) - tiny().eval()(video)).abs().max() == pytest.approx(1.0, abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.failed"]  # nothing else left
    with pytest.raises(ValueError, match="export format 'tflite' is not one of onnx, torchscript"):
        export_model(tiny(), tmp_path / "m.tfl", "tflite")


def test_cli_exports_a_checkpoint_and_prints_the_parity(tmp_path, capsys):
    model = tiny()
    save_model(tmp_path / "ck.safetensors", model, classes=[f"c{i}" for i in range(5)])
    out = tmp_path / "out" / "m.pt"
    argv = ["--format", "torchscript", "--checkpoint", str(tmp_path / "ck.safetensors"), "--out", str(out)]
    assert export.main([*argv, "--frames", "3"]) == 0
    printed = capsys.readouterr().out
    assert "input (B, 3, 3, 32, 32) with B dynamic" in printed and "batch 3" in printed and ": OK" in printed
    video = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out))(video), model.eval()(video), atol=1e-4, rtol=0)


def test_cli_returns_1_with_the_reason_when_parity_fails(tmp_path, capsys, monkeypatch):
    save_model(tmp_path / "ck.safetensors", tiny())

    def failing(*args, **kwargs):
        raise ExportParityError("m.pt: the torchscript export differs from PyTorch by 3.00e-02 > tolerance 1e-04")

    monkeypatch.setattr(export, "export_model", failing)
    argv = [
        "--format",
        "torchscript",
        "--checkpoint",
        str(tmp_path / "ck.safetensors"),
        "--out",
        str(tmp_path / "m.pt"),
    ]
    assert export.main(argv) == 1
    assert "parity check failed: m.pt: the torchscript export differs" in capsys.readouterr().err


# ---- issue 24: an export never destroys the last good one, and every failure is one line -------------------


@contextmanager
def small_disk(path: Path, options: str) -> Iterator[bool]:
    """A tmpfs at `path` (True), or False where mounting is refused (the tests then fill the disk by patching)."""
    mounted = _mount_tmpfs(path, options)
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _export_args(checkpoint: Path, out: Path, fmt: str = "torchscript") -> list[str]:
    return ["export", "--format", fmt, "--checkpoint", str(checkpoint), "--out", str(out)]


def test_a_reexport_that_fills_the_disk_keeps_the_last_good_export_and_is_one_line(tmp_path, capsys, monkeypatch):
    checkpoint = save_model(tmp_path / "ck.safetensors", tiny())
    disk = tmp_path / "disk"
    out = disk / "m.pt"
    with small_disk(disk, "size=384k") as mounted:  # room for one 250 kB export, not for a second beside it
        if mounted:  # the real CLI: torch's own file writer aborted the process here (exit 134, a c10::Error)
            assert cli(*_export_args(checkpoint, out)).returncode == 0
            good = out.read_bytes()
            again = cli(*_export_args(checkpoint, out))
            assert again.returncode == 2
            line = one_line_error(again.stderr)
        else:
            assert main(_export_args(checkpoint, out)) == 0
            good = out.read_bytes()
            real = Path.write_bytes

            def full(self, data):
                real(self, bytes(data)[:1000])  # a partial file, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(Path, "write_bytes", full)
            assert main(_export_args(checkpoint, out)) == 2
            line = one_line_error(capsys.readouterr().err)
        assert f"No space left on device '{out}'; free space" in line
        assert out.read_bytes() == good and [p.name for p in disk.iterdir()] == ["m.pt"]  # no partial file


def test_a_first_onnx_export_onto_a_full_disk_leaves_no_file_and_is_one_line(tmp_path, capsys, monkeypatch):
    checkpoint = save_model(tmp_path / "ck.safetensors", tiny())
    disk = tmp_path / "disk"
    out = disk / "m.onnx"
    with small_disk(disk, "size=64k") as mounted:
        if mounted:
            done = cli(*_export_args(checkpoint, out, "onnx"), timeout=300)
            assert done.returncode == 2
            line = one_line_error(done.stderr)
        else:

            def full(model, example, path):
                path.write_bytes(b"\x08\x07partial")
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setitem(export.EXPORTERS, "onnx", (full, export.EXPORTERS["onnx"][1]))
            assert main(_export_args(checkpoint, out, "onnx")) == 2
            line = one_line_error(capsys.readouterr().err)
        assert f"No space left on device '{out}'" in line
        assert list(disk.iterdir()) == []  # it left a 0-byte m.onnx before


def test_an_export_into_a_read_only_folder_is_one_line(tmp_path, capsys, monkeypatch):
    checkpoint = save_model(tmp_path / "ck.safetensors", tiny())
    folder = tmp_path / "ro"
    with small_disk(folder, "ro,size=64k") as mounted:
        if mounted:
            done = cli(*_export_args(checkpoint, folder / "m.pt"))
            assert done.returncode == 2
            line = one_line_error(done.stderr)
        else:  # root ignores file modes: the file system's refusal, simulated

            def read_only(*args, **kwargs):
                raise OSError(errno.EROFS, "Read-only file system", str(folder / ".m.pt.x.export"))

            monkeypatch.setattr(export.tempfile, "mkdtemp", read_only)
            assert main(_export_args(checkpoint, folder / "m.pt")) == 2
            line = one_line_error(capsys.readouterr().err)
    assert f"Read-only file system '{folder / 'm.pt'}'; that file system is read-only: write somewhere else" in line


class ReturnsAString(nn.Module):
    """A model whose output a trace cannot follow: the exporter fails inside torch."""

    def __init__(self, model: tl.TimeSformer) -> None:
        super().__init__()
        self.model, self.cfg = model, model.cfg

    def forward(self, video: Tensor) -> dict:
        return {"logits": self.model(video), "note": "not a tensor"}


def test_an_exporter_failure_is_one_line_naming_the_file_and_leaves_nothing(tmp_path):
    with pytest.raises(ExportError, match=r"'.*m.pt': the torchscript exporter failed \(RuntimeError: Tracer") as e:
        export_model(ReturnsAString(tiny()), tmp_path / "m.pt", "torchscript")
    assert "\n" not in str(e.value) and "try --format onnx" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_checked_export_moves_into_place_with_its_external_data(tmp_path):
    """An ONNX export above 1.8 GB of weights keeps them in `<name>.data` beside the graph: both move together."""
    (tmp_path / "m.onnx").write_bytes(b"old graph")
    (tmp_path / "m.onnx.data").write_bytes(b"old weights")
    staging = tmp_path / ".m.onnx.abc.export"
    staging.mkdir()
    (staging / "m.onnx").write_bytes(b"new graph")
    (staging / "m.onnx.data").write_bytes(b"new weights")
    export._publish(staging / "m.onnx", tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == b"new graph" and (
        tmp_path / "m.onnx.data"
    ).read_bytes() == b"new weights"
    assert list(staging.iterdir()) == []
