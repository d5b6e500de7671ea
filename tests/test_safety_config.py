"""Issue 16, defect 7: nonsense config is refused when the config is built, naming the key; `test` honours
`model.*` overrides; unreadable validation videos are counted among the skipped ones."""

from __future__ import annotations

import json

import pytest
from safety_fixtures import cli, one_line_error, smoke_args, smoke_data, tiny_model

import timesformer_lite as tl
from timesformer_lite.config import ConfigError
from timesformer_lite.train import run
from timesformer_lite.train.protocol import test_checkpoint as run_test_command
from timesformer_lite.weights import WeightsError, save_model

NONSENSE = [
    ("model.depth=0", "model.depth=0 must be at least 1"),
    ("model.num_heads=0", "model.num_heads=0 must be at least 1"),
    ("model.patch_size=0", "model.patch_size=0 must be at least 1"),
    ("model.num_heads=3", "model.embed_dim=32 is not divisible by model.num_heads=3"),
    ("model.drop_path_rate=2", r"model.drop_path_rate=2.0 must be in \[0, 1\)"),
    ("model.num_frames=-1", "model.num_frames=-1 must be at least 1"),
    ("data.num_clips=0", "data.num_clips=0 must be at least 1"),
    ("data.num_crops=2", "data.num_crops=2 must be 1 .centre. or 3"),
    ("data.std=[0.5,0,0.5]", "data.std=.* must be above 0"),
    ("data.train_sampling=random", "data.train_sampling='random' is not one of segment, linspace, dense"),
    ("train.epochs=-1", "train.epochs=-1 must be at least 1"),
    ("train.eval_every=0", "train.eval_every=0 must be at least 1"),
    ("train.log_every=0", "train.log_every=0 must be at least 1"),
    ("train.batch_size=0", "train.batch_size=0 must be at least 1"),
    ("train.lr=-0.1", "train.lr=-0.1 must be above 0"),
    ("train.amp=fp8", "train.amp='fp8' is not one of none, bf16, fp16"),
    ("train.device=gpu", "train.device='gpu' is not one of auto, cpu, cuda, cuda:N, mps"),
    ("train.name=../../x", r"train.name='../../x' must be a folder name inside train.out_dir"),
]


@pytest.mark.parametrize("override, message", NONSENSE, ids=[o for o, _ in NONSENSE])
def test_nonsense_values_are_refused_when_the_config_is_built_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        tl.load_config("smoke", [override])


def test_the_cli_refuses_nonsense_in_one_line_before_any_work(tmp_path):
    for override, key in [("model.depth=0", "model.depth"), ("train.epochs=-1", "train.epochs")]:
        proc = cli("train", *smoke_args(tmp_path / "data", tmp_path / "runs", override), timeout=60)
        assert proc.returncode == 2
        assert key in one_line_error(proc.stderr)
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_a_malformed_yaml_preset_is_one_line_naming_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depth: 2\n   num_heads: [\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML at line 3"):
        tl.load_config(bad)


def test_test_command_applies_model_overrides_to_the_model_it_tests(tmp_path):
    model = tiny_model(num_classes=10)
    cfg = tl.load_config("smoke", [f"data.root={tmp_path / 'none'}"])
    path = save_model(tmp_path / "m.safetensors", model, tl.Config(model=model.cfg, data=cfg.data, train=cfg.train))
    # the checkpoint has 2 blocks: a 3-block model cannot take it, which a silently ignored override hid
    with pytest.raises(WeightsError, match=r"does not fit the model .*depth=3"):
        run_test_command(path, ["model.depth=3"])


def test_unreadable_validation_videos_are_counted_among_the_skipped(tmp_path):
    data = smoke_data(tmp_path / "data")
    val = (data / "val.txt").read_text().split()[0]
    (data / val).write_bytes(b"not a video")
    result = run("smoke", smoke_args(data, tmp_path / "runs", "train.test=false")[2:])
    assert result.history[0]["val_skipped"] == 1
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["bad_videos_skipped"] == 1
