"""Export to ONNX and TorchScript: parity with PyTorch at batch sizes other than the traced one, and the CLI."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import Tensor, nn

import timesformer_lite as tl
from timesformer_lite import export
from timesformer_lite.export import ExportParityError, export_model
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


def test_an_export_that_disagrees_with_pytorch_is_an_error(tmp_path):
    with pytest.raises(ExportParityError, match=r"differs from PyTorch by 1.00e\+00 > tolerance 1e-04"):
        export_model(BakesTheBatch(tiny()), tmp_path / "m.pt", "torchscript")
    assert (tmp_path / "m.pt").exists()  # kept for inspection
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
