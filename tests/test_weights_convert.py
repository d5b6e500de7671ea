"""`timesformer-lite convert`: ours -> HF -> ours through the CLI, and the HF folder in transformers."""

import errno
import pickle
from pathlib import Path

import torch
from safetensors import safe_open
from safety_fixtures import cli, one_line_error
from test_export import small_disk
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


def _tiny_checkpoint(path):
    torch.manual_seed(2)
    model = tl.TimeSformer(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=3)
    return save_model(path, model, classes=["x", "y", "z"])


def _fill_the_disk(monkeypatch):
    """Where no tmpfs can be mounted: safetensors' writer fails as it does on a full disk, after a partial file."""
    from safetensors import SafetensorError

    def full(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("timesformer_lite.weights.io.save_file", full)


def test_convert_onto_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    src = _tiny_checkpoint(tmp_path / "a.safetensors")
    disk = tmp_path / "disk"
    dst = disk / "b.safetensors"
    with small_disk(disk, "size=64k") as mounted:  # the checkpoint is 180 kB
        if mounted:
            done = cli("convert", str(src), str(dst))
            assert done.returncode == 2
            line = one_line_error(done.stderr)
        else:
            disk.mkdir()
            _fill_the_disk(monkeypatch)
            assert main(["convert", str(src), str(dst)]) == 2
            line = one_line_error(capsys.readouterr().err)
        assert f"No space left on device '{dst}'; free space on that disk" in line  # was a SafetensorError traceback
        assert list(disk.iterdir()) == []


def test_convert_to_hf_that_fails_on_its_last_file_keeps_the_old_folder_whole(tmp_path, capsys, monkeypatch):
    src = _tiny_checkpoint(tmp_path / "a.safetensors")
    folder = tmp_path / "hf"
    assert main(["convert", str(src), str(folder), "--to", "hf"]) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = Path.write_text

    def full(self, text, *args, **kwargs):  # the new weights and preprocessor config are written; config.json not
        if self.name.startswith(".config.json."):
            real(self, text[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert main(["convert", str(src), str(folder), "num_classes=5", "--to", "hf"]) == 2
    assert f"No space left on device '{folder / 'config.json'}'" in one_line_error(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no 5-class weights beside a 3-class config
    assert sorted(before) == ["config.json", "model.safetensors", "preprocessor_config.json"]
