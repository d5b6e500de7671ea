"""Our checkpoint format: lossless round trips, the stored config and class names, atomic writes."""

import json

import pytest
import torch
from safetensors import safe_open

import timesformer_lite as tl
from timesformer_lite.config import load_config
from timesformer_lite.weights import (
    WeightsError,
    detect,
    load_pretrained,
    read_checkpoint,
    save_hf,
    save_model,
)

TINY = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=3)
CLASSES = ["left", "right", "still"]


def perturbed_model(seed: int = 0, **values) -> tl.TimeSformer:
    torch.manual_seed(seed)
    model = tl.TimeSformer(tl.ModelConfig(**{**TINY, "drop_path_rate": 0.0, **values})).eval()
    with torch.no_grad():
        for p in model.parameters():  # zero-initialised parts (temporal_fc, time_embed) become non-trivial
            p.add_(torch.randn_like(p) * 0.1)
    return model


def assert_same_state(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_safetensors_round_trip_is_bitwise_and_keeps_config_and_classes(tmp_path):
    model = perturbed_model()
    config = load_config("smoke", {"data.mean": [0.5, 0.5, 0.5], "train.epochs": 3})
    path = save_model(tmp_path / "m.safetensors", model, config, CLASSES)
    ckpt = read_checkpoint(path)
    assert ckpt.source == "ours" and ckpt.classes == CLASSES
    assert ckpt.config.model == model.cfg  # the model section is always the weights' architecture
    assert ckpt.config.data.mean == [0.5, 0.5, 0.5] and ckpt.config.train.epochs == 3
    assert_same_state(model.state_dict(), ckpt.state_dict)
    loaded = load_pretrained(path)
    assert_same_state(model.state_dict(), loaded.state_dict())
    assert loaded.classes == CLASSES and loaded.run_config.data.mean == [0.5, 0.5, 0.5]
    assert loaded.load_report.ok and set(loaded.load_report.keys.values()) == {"loaded"}
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed, nothing left behind


def test_metadata_is_the_documented_format(tmp_path):
    path = save_model(tmp_path / "m.safetensors", perturbed_model(), classes=CLASSES)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "timesformer_lite" and meta["version"] == "1"
    assert json.loads(meta["classes"]) == CLASSES
    assert json.loads(meta["config"])["model"]["embed_dim"] == 32
    assert set(json.loads(meta["config"])) == {"model", "data", "train"}


def test_trainer_pt_checkpoint_loads_with_weights_only(tmp_path):
    model = perturbed_model(1)
    cfg = load_config("smoke", {"model": {**TINY, "drop_path_rate": 0.0}})
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(1, 4, 3, 32, 32)).sum().backward()
    opt.step()
    blob = {
        "format": "timesformer_lite",
        "version": 1,
        "model": model.state_dict(),
        "config": cfg.to_dict(),
        "classes": CLASSES,
        "optimizer": opt.state_dict(),
        "epoch": 2,
    }
    torch.save(blob, tmp_path / "last.pt")
    assert detect(tmp_path / "last.pt") == "ours"
    loaded = load_pretrained(tmp_path / "last.pt")
    assert_same_state(model.state_dict(), loaded.state_dict())
    assert loaded.classes == CLASSES and loaded.run_config.train.epochs == cfg.train.epochs


def test_ours_to_hf_to_ours_is_bitwise(tmp_path):
    model = perturbed_model(2)
    save_model(tmp_path / "a.safetensors", model, classes=CLASSES)
    save_hf(tmp_path / "hf", load_pretrained(tmp_path / "a.safetensors"))
    back = load_pretrained(tmp_path / "hf")
    assert back.load_report.ok and back.classes == CLASSES
    assert back.cfg == model.cfg
    assert_same_state(model.state_dict(), back.state_dict())


def test_bad_checkpoints_are_refused_with_the_reason(tmp_path):
    with pytest.raises(WeightsError, match="3 class names for a head of 5"):
        save_model(tmp_path / "m.safetensors", perturbed_model(num_classes=5), classes=CLASSES)
    with pytest.raises(WeightsError, match="must end in .safetensors"):
        save_model(tmp_path / "m.pt", perturbed_model())
    torch.save({"format": "timesformer_lite", "version": 7, "model": {}}, tmp_path / "future.pt")
    with pytest.raises(WeightsError, match="version 7; this timesformer_lite reads version 1"):
        read_checkpoint(tmp_path / "future.pt")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        read_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("save", [save_model, save_hf])
@pytest.mark.parametrize("attention_type", ["divided_space_time", "space_only"])
def test_saving_a_fused_model_is_refused_or_writes_a_file_that_loads(tmp_path, save, attention_type):
    model = perturbed_model(attention_type=attention_type)
    fused = tl.fuse(model)
    path = tmp_path / ("m.safetensors" if save is save_model else "hf")
    try:
        save(path, fused, classes=CLASSES)
    except WeightsError as e:  # what load_pretrained would have refused ("missing ...temporal_fc...")
        assert "a tl.fuse(model) copy is for inference only: save the model you fused" in str(e)
        assert "\n" not in str(e) and not path.exists()
    else:  # nothing was folded away (space_only has no *_fc): the file is the reference model's and loads
        loaded = load_pretrained(path)
        video = torch.randn(2, 4, 3, 32, 32)
        with torch.no_grad():
            assert (loaded(video) - model(video)).abs().max() <= 1e-5
    if attention_type == "divided_space_time":
        assert not path.exists()  # its temporal_fc is folded into temporal_attn.proj: always refused
    save(path, model, classes=CLASSES)  # the reference model it was fused from saves and loads
    assert load_pretrained(path).load_report.ok
