"""Nothing is ignored silently: missing, unexpected and mis-shaped keys raise by default, naming the keys and
the fix; strict=False loads what fits and reports the rest; bad overrides and sources are refused."""

import pytest
import torch

import timesformer_lite as tl
from timesformer_lite.config import ConfigError
from timesformer_lite.weights import WeightsError, load_pretrained

TINY = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)


def official_file(tmp_path, edit=None, **values):
    torch.manual_seed(0)
    model = tl.TimeSformer(tl.ModelConfig(**{**TINY, **values}))
    state = dict(model.state_dict())
    if edit:
        edit(state)
    path = tmp_path / "ckpt.pyth"
    torch.save({"model_state": {"model." + k: v for k, v in state.items()}}, path)
    return model, path


def test_missing_keys_raise_with_their_names_and_load_with_strict_false(tmp_path):
    model, path = official_file(tmp_path, lambda s: (s.pop("norm.weight"), s.pop("blocks.1.temporal_fc.bias")))
    with pytest.raises(WeightsError, match=r"missing: blocks\.1\.temporal_fc\.bias, norm\.weight.*strict=False"):
        load_pretrained(path, num_heads=2)
    loaded = load_pretrained(path, num_heads=2, strict=False)
    report = loaded.load_report
    assert report.missing == ["blocks.1.temporal_fc.bias", "norm.weight"]
    assert report.keys["norm.weight"] == "missing (left at initialisation)"
    assert torch.equal(loaded.norm.weight, torch.ones(32))  # initialisation, not the file
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)
    assert "2 missing" in report.summary()


def test_unexpected_keys_raise_with_their_names(tmp_path):
    _, path = official_file(tmp_path, lambda s: s.update({"dist_token": torch.zeros(1, 1, 32)}))
    with pytest.raises(WeightsError, match=r"unexpected: dist_token"):
        load_pretrained(path, num_heads=2)
    assert load_pretrained(path, num_heads=2, strict=False).load_report.unexpected == ["dist_token"]


def test_shape_mismatch_raises_with_both_shapes(tmp_path):
    _, path = official_file(tmp_path, lambda s: s.update({"blocks.1.mlp.fc1.weight": torch.zeros(64, 32)}))
    with pytest.raises(
        WeightsError, match=r"shape mismatch: blocks\.1\.mlp\.fc1\.weight: file \(64, 32\) vs model \(128, 32\)"
    ):
        load_pretrained(path, num_heads=2)
    report = load_pretrained(path, num_heads=2, strict=False).load_report
    assert report.mismatched == ["blocks.1.mlp.fc1.weight: file (64, 32) vs model (128, 32)"]


def test_a_wrong_scheme_names_the_override_that_fits(tmp_path):
    _, path = official_file(tmp_path)
    with pytest.raises(WeightsError, match=r"unexpected: blocks\.0\.temporal_norm1.*attention_type=divided_space_time"):
        load_pretrained(path, num_heads=2, attention_type="joint_space_time")
    with pytest.raises(WeightsError, match=r"depth=2 \(the file's shapes\)"):
        load_pretrained(path, num_heads=2, depth=3)


def test_bad_overrides_and_sources_are_refused(tmp_path):
    _, path = official_file(tmp_path)
    with pytest.raises(ConfigError, match="unknown config key 'model.num_head'.*did you mean 'num_heads'"):
        load_pretrained(path, num_head=2)
    with pytest.raises(ConfigError, match="model.num_frames expects an integer"):
        load_pretrained(path, num_frames="eight")
    with pytest.raises(WeightsError, match="unknown source='caffe'"):
        load_pretrained(path, source="caffe")
    torch.save({"conv1.weight": torch.zeros(2)}, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match=r"cannot tell the format of '.*resnet\.pth'.*conv1\.weight.*source="):
        load_pretrained(tmp_path / "resnet.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_pretrained(tmp_path / "missing.pth")
