"""`timesformer-lite convert`: ours -> HF -> ours through the CLI, and the HF folder in transformers."""

import pickle

import torch
from safetensors import safe_open
from transformers import TimesformerForVideoClassification

import timesformer_lite as tl
from timesformer_lite.cli import main
from timesformer_lite.weights import load_pretrained, read_checkpoint, save_model


def test_convert_ours_to_hf_and_back(tmp_path, capsys):
    torch.manual_seed(0)
    cfg = tl.ModelConfig(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    model = tl.TimeSformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_model(tmp_path / "a.safetensors", model, classes=["x", "y", "z"])
    assert main(["convert", str(tmp_path / "a.safetensors"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "b.safetensors")]) == 0
    assert "wrote" in capsys.readouterr().out
    back = read_checkpoint(tmp_path / "b.safetensors")
    assert back.classes == ["x", "y", "z"]
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict[k], v), k
    hf = TimesformerForVideoClassification.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.id2label == {0: "x", 1: "y", 2: "z"}
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert (hf(pixel_values=video).logits - model(video)).abs().max().item() <= 1e-5


def test_convert_applies_overrides_and_reports_errors_in_one_line(tmp_path, capsys):
    torch.manual_seed(1)
    model = tl.TimeSformer(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2)
    state = {"backbone." + k: v.numpy().T.copy() if k.endswith("weight") and v.ndim == 2 else v.numpy()
             for k, v in model.state_dict().items() if not k.startswith("head.")}  # fmt: skip
    with open(tmp_path / "k.pdparams", "wb") as f:
        pickle.dump(state, f, protocol=4)
    dst = tmp_path / "k.safetensors"
    assert main(["convert", str(tmp_path / "k.pdparams"), str(dst), "num_heads=2", "model.num_frames=8"]) == 0
    out = read_checkpoint(dst)
    assert out.config.model.num_frames == 8 and out.state_dict["time_embed"].shape == (1, 8, 32)
    assert out.config.model.num_classes == 0
    loaded = load_pretrained(dst)
    assert torch.equal(loaded.time_embed[0, 1::2], model.time_embed[0])  # nearest: each frame embedding twice
    assert main(["convert", str(tmp_path / "k.pdparams"), str(tmp_path / "x.safetensors"), "depth=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("timesformer-lite convert: error:") and "depth=2" in err and "\n" not in err
    with safe_open(str(dst), framework="pt") as f:
        assert f.metadata()["format"] == "timesformer_lite"
