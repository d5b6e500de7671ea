"""Hugging Face folders and files, official .pyth: the loaded model gives the home code's logits.

Random weights from a `TimesformerConfig` (no downloads); float64 with perturbed weights proves the
semantics (<= 1e-6), float32 at HF's default init must agree to 1e-4.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from safety_fixtures import cli, one_line_error
from transformers import TimesformerConfig, TimesformerForVideoClassification

import timesformer_lite as tl
from timesformer_lite.weights import (
    WeightsError,
    config_to_hf,
    detect,
    load_pretrained,
    save_hf,
    state_dict_from_hf,
)

CONFIGS = {
    "32px-4f": dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=7),
    "48px-3f-joint": dict(
        img_size=48, patch_size=16, num_frames=3, embed_dim=48, depth=2, num_heads=4, num_classes=5,
        attention_type="joint_space_time",
    ),
}  # fmt: skip


def hf_model(values: dict, dtype: torch.dtype, perturb: float, seed: int = 0) -> TimesformerForVideoClassification:
    torch.manual_seed(seed)
    cfg = tl.ModelConfig(drop_path_rate=0.0, **values)
    hf = TimesformerForVideoClassification(TimesformerConfig(**config_to_hf(cfg))).to(dtype).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * perturb)
    return hf


def clip(values: dict, dtype: torch.dtype, batch: int = 2, frames: int | None = None, size: int | None = None):
    T, S = frames or values["num_frames"], size or values["img_size"]
    return torch.randn(batch, T, 3, S, S, dtype=dtype)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_hf_folder_gives_hf_logits_in_float64(tmp_path, name):
    values = CONFIGS[name]
    hf = hf_model(values, torch.float64, perturb=0.3)
    hf.save_pretrained(tmp_path)
    assert detect(tmp_path) == "hf"
    model = load_pretrained(tmp_path).double()
    assert model.cfg.attention_type == values.get("attention_type", "divided_space_time")
    assert model.load_report.ok and model.load_report.assumed == []  # config.json records everything
    video = clip(values, torch.float64)
    with torch.no_grad():
        expected = hf(pixel_values=video).logits
        assert expected.abs().max() > 1.0
        assert (model(video) - expected).abs().max().item() <= 1e-6


@pytest.mark.parametrize("name", list(CONFIGS))
def test_hf_folder_gives_hf_logits_in_float32_at_default_init(tmp_path, name):
    values = CONFIGS[name]
    hf = hf_model(values, torch.float32, perturb=0.0, seed=1)
    hf.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    video = clip(values, torch.float32, batch=3)
    with torch.no_grad():
        assert (model(video) - hf(pixel_values=video).logits).abs().max().item() <= 1e-4


def test_bare_hf_state_dict_infers_the_architecture_from_shapes(tmp_path):
    values = CONFIGS["32px-4f"]
    hf = hf_model(values, torch.float64, perturb=0.3)
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, tmp_path / "hf.safetensors")
    assert detect(tmp_path / "hf.safetensors") == "hf"
    guessed = load_pretrained(tmp_path / "hf.safetensors")
    assert guessed.cfg.num_heads == 1  # width 32 / 64 per head: the default, reported as assumed
    assert any(a.startswith("num_heads=1 assumed") for a in guessed.load_report.assumed)
    model = load_pretrained(tmp_path / "hf.safetensors", num_heads=2).double()
    for field in ("img_size", "patch_size", "num_frames", "embed_dim", "depth", "num_classes"):
        assert getattr(model.cfg, field) == values[field], field
    assert [a.split(" ")[0] for a in model.load_report.assumed] == ["layer_norm_eps=1e-06"]  # HF's default
    video = clip(values, torch.float64)
    with torch.no_grad():
        assert (model(video) - hf(pixel_values=video).logits).abs().max().item() <= 1e-6


def test_official_pyth_gives_hf_logits(tmp_path):
    values = CONFIGS["32px-4f"]
    hf = hf_model(values, torch.float64, perturb=0.3)
    ours, unmapped = state_dict_from_hf(hf.state_dict())
    assert unmapped == []
    official = {"model." + k: v for k, v in ours.items()}  # the registry wrapper holds the net as self.model
    torch.save({"model_state": official, "optimizer_state": {}, "epoch": 15, "cfg": "TRAIN: ..."}, tmp_path / "k.pyth")
    torch.save({"state_dict": {"module." + k: v for k, v in ours.items()}}, tmp_path / "ddp.pth")
    video = clip(values, torch.float64)
    with torch.no_grad():
        expected = hf(pixel_values=video).logits
        for name in ("k.pyth", "ddp.pth"):
            assert detect(tmp_path / name) == "official"
            model = load_pretrained(tmp_path / name, num_heads=2).double()
            assert model.load_report.ok
            assert (model(video) - expected).abs().max().item() <= 1e-6


@pytest.mark.parametrize("size, frames", [(48, 4), (32, 6), (64, 8)])
def test_resizing_on_load_equals_running_the_original_at_that_size(tmp_path, size, frames):
    values = CONFIGS["32px-4f"]
    hf_model(values, torch.float64, perturb=0.3).save_pretrained(tmp_path)
    original = load_pretrained(tmp_path)
    resized = load_pretrained(tmp_path, img_size=size, num_frames=frames)
    report = resized.load_report
    assert report.ok
    assert report.keys["time_embed"].startswith("resized" if frames != 4 else "loaded")
    assert report.keys["pos_embed"].startswith("resized" if size != 32 else "loaded")
    assert resized.pos_embed.shape[1] == 1 + (size // 8) ** 2 and resized.time_embed.shape[1] == frames
    video = clip(values, torch.float32, frames=frames, size=size)
    with torch.no_grad():
        assert (resized(video) - original(video)).abs().max().item() <= 1e-6


def test_new_class_count_replaces_the_head_and_keeps_the_rest(tmp_path):
    values = CONFIGS["32px-4f"]
    hf = hf_model(values, torch.float32, perturb=0.3)
    hf.config.id2label = {i: f"c{i}" for i in range(7)}
    hf.save_pretrained(tmp_path)
    kept = load_pretrained(tmp_path)
    assert kept.classes == [f"c{i}" for i in range(7)]
    model = load_pretrained(tmp_path, num_classes=3)
    assert model.head.weight.shape == (3, 32) and model.load_report.ok
    assert model.load_report.keys["head.weight"] == "new (initialised)" and model.classes is None
    video = clip(values, torch.float32)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(video)[0], kept.forward_features(video)[0], atol=1e-6)


def test_exported_hf_folder_loads_in_transformers_with_equal_logits(tmp_path):
    torch.manual_seed(3)
    cfg = tl.ModelConfig(**CONFIGS["48px-3f-joint"])  # drop_path_rate 0.1: written as 0 for transformers 5.x
    model = tl.TimeSformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_hf(tmp_path, model, classes=[f"k{i}" for i in range(5)])
    hf = TimesformerForVideoClassification.from_pretrained(tmp_path).eval()
    assert hf.config.id2label[4] == "k4" and hf.config.attention_type == "joint_space_time"
    video = clip(CONFIGS["48px-3f-joint"], torch.float32)
    with torch.no_grad():
        assert (hf(pixel_values=video).logits - model(video)).abs().max().item() <= 1e-5


# ---- issue 24: a config.json that describes no TimeSformer is one line naming the file and the key ----------


def _hf_folder(folder: Path, **changes) -> Path:
    """A save_hf folder of a tiny model whose config.json has `changes` (None deletes a key)."""
    save_hf(folder, tl.TimeSformer(**CONFIGS["32px-4f"]), classes=[f"c{i}" for i in range(7)])
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return folder


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hidden_size": 0}, "hidden_size=0 must be a positive integer"),
        ({"hidden_size": "abc"}, "hidden_size='abc' must be a positive integer"),
        ({"intermediate_size": 0.5}, "intermediate_size=0.5 must be a positive integer"),
        ({"num_attention_heads": 7}, "hidden_size=32 is not divisible by num_attention_heads=7"),
        ({"image_size": "32"}, "image_size expects an integer, got '32'"),
        ({"layer_norm_eps": "tiny"}, "layer_norm_eps expects a number, got 'tiny'"),
        ({"hidden_act": "relu"}, "hidden_act='relu' is not supported"),
        ({"id2label": {"x": 1}}, 'id2label must map the class indices 0..N-1 to names, like {"0": "abseiling"}'),
        ({"id2label": {"1": "a", "2": "b"}, "num_labels": None}, "id2label must map the class indices 0..N-1"),
    ],
)
def test_a_bad_hf_config_json_entry_is_one_line_naming_the_file_and_the_key(tmp_path, changes, message):
    folder = _hf_folder(tmp_path / "hf", **changes)
    with pytest.raises(WeightsError) as e:
        load_pretrained(folder)
    assert str(e.value).startswith(f"'{folder / 'config.json'}': {message}") and "\n" not in str(e.value)


@pytest.mark.parametrize("hidden_size", [0, "abc"])
def test_a_bad_hidden_size_in_a_hub_cache_is_one_line_from_the_cli(tmp_path, monkeypatch, hidden_size):
    cache = tmp_path / "hub"
    repo = cache / "models--org--broken"
    commit = "89abcdef" * 5
    snapshot = _hf_folder(repo / "snapshots" / commit, hidden_size=hidden_size)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done = cli("convert", "org/broken", str(tmp_path / "out.safetensors"))  # a hub id: found in the cache
    assert done.returncode == 2
    line = one_line_error(done.stderr)  # was a ZeroDivisionError / TypeError traceback
    assert f"'{snapshot / 'config.json'}': hidden_size={hidden_size!r} must be a positive integer" in line
    assert not (tmp_path / "out.safetensors").exists()
