"""Fine-tuning on your own videos in one command (issue 21): the `finetune` preset, offline.

`my_videos` is what a user brings: class folders (`train/<class>/*.mp4`, `val/`, `test/`) of four classes whose
names the shipped toy model never saw, cut from toy clips (move down, move up, grow, shrink: motions that a
horizontal flip, on by default for your own videos, leaves as they are) drawn with another seed than the clips
the model trained on. The command is the README's, run as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from test_weights_hub import COMMIT, LABELS, REPO, hf_model

import timesformer_lite as tl
from timesformer_lite.assets import toy_model_path
from timesformer_lite.config import ConfigError
from timesformer_lite.data.toy import clip_rng, make_clip, write_mp4
from timesformer_lite.train import run
from timesformer_lite.train.finetune import finetune_config, given_keys
from timesformer_lite.train.optim import build_optimizer, freeze_backbone, param_groups

ROOT = Path(__file__).resolve().parents[1]
TOY = "timesformer-lite/toy-divided"
NEW_CLASSES = {"deflating": 5, "falling": 2, "inflating": 4, "rising": 3}  # new name -> toy label (label order)
SPLITS = {"train": 12, "val": 4, "test": 10}  # clips per class
SEED = 7  # the shipped model trained on clips of seed 0


@pytest.fixture(scope="module")
def my_videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("my_videos")
    for split, n in SPLITS.items():
        for name, label in NEW_CLASSES.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                write_mp4(folder / f"{name}_{i:02d}.mp4", make_clip(label, clip_rng(SEED, split, label, i)))
    return root


def train_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "timesformer_lite", "train", "--config", "finetune", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_one_command_fine_tunes_the_toy_model_to_four_new_classes_offline(my_videos, tmp_path):
    env = {"TIMESFORMER_LITE_CACHE": str(tmp_path / "no-cache"), "HF_HUB_OFFLINE": "1"}
    out = train_cli(f"data.root={my_videos}", f"model.pretrained={TOY}", "data.cache=true", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (
        f"fine-tuning from '{TOY}' (ours: width 64, depth 2, 8 frames at 32 px): new head for 4 classes "
        "(the weights' head has 10); backbone lr x0.1\n"
    ) in out.stdout
    run_dir = tmp_path / "runs" / "finetune"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_top1"] >= 0.9, summary
    recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert recorded["model"]["num_classes"] == 4 and recorded["model"]["num_heads"] == 4  # the weights' own
    assert recorded["data"]["mean"] == [0.5] * 3 and recorded["data"]["test_scale"] == 32  # the toy run's
    assert recorded["train"]["backbone_lr_scale"] == 0.1
    model = tl.load_pretrained(run_dir / "best.pt")
    assert model.classes == sorted(NEW_CLASSES)  # the folder names, in label order
    assert not (tmp_path / "no-cache").exists()  # served from the package, nothing downloaded


def test_head_only_trains_the_new_head_and_leaves_every_other_weight_as_shipped(my_videos, tmp_path):
    result = run(
        "finetune",
        [f"data.root={my_videos}", f"model.pretrained={TOY}", "train.head_only=true", "train.epochs=1"]
        + [f"train.out_dir={tmp_path}", "train.test=false"],
    )
    trained = tl.load_pretrained(result.run_dir / "last.pt").state_dict()
    shipped = tl.load_pretrained(toy_model_path()).state_dict()
    body = [k for k in trained if not k.startswith("head.")]
    assert len(body) == len(shipped) - 2 and all(torch.equal(trained[k], shipped[k]) for k in body)
    assert trained["head.weight"].shape == (4, 64) and result.history[0]["loss"] > 0


def test_param_groups_put_the_head_first_and_scale_the_backbone(monkeypatch):
    model = tl.TimeSformer(tl.load_config("smoke").model)
    t = tl.load_config("smoke", ["train.backbone_lr_scale=0.25"]).train
    groups = param_groups(model, t, lr=0.004)
    head = {id(p) for n, p in model.named_parameters() if n.startswith("head.")}
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.004, 0.05), (0.004, 0.0), (0.001, 0.05), (0.001, 0.0)]
    assert {id(p) for g in groups[:2] for p in g["params"]} == head
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    decayed = {id(p) for g in groups if g["weight_decay"] for p in g["params"]}
    skip = model.no_weight_decay()
    assert decayed == {id(p) for n, p in model.named_parameters() if p.ndim > 1 and n not in skip}
    sgd = build_optimizer(model, tl.load_config("smoke", ["train.optimizer=sgd"]).train, lr=0.1)
    assert [g["lr"] for g in sgd.param_groups] == [0.1] and sgd.param_groups[0]["nesterov"]  # one lr: one group
    plain = param_groups(model, tl.load_config("smoke").train, lr=0.004)  # the recipe's own groups, as before
    assert [(g["lr"], g["weight_decay"]) for g in plain] == [(0.004, 0.05), (0.004, 0.0)]
    assert sum(len(g["params"]) for g in plain) == len(list(model.parameters()))
    assert freeze_backbone(model) == len(list(model.parameters())) - 2
    assert [len(g["params"]) for g in param_groups(model, t, lr=0.004)] == [1, 1]  # frozen tensors left out


def test_unset_keys_come_from_the_weights_and_the_folders_and_given_ones_win(my_videos):
    keys = [
        f"data.root={my_videos}",
        f"model.pretrained={TOY}",
        "model.drop_path_rate=0.2",
        "data.mean=[0.4, 0.4, 0.4]",
    ]
    cfg, line = finetune_config("finetune", keys)
    assert (cfg.model.embed_dim, cfg.model.num_heads, cfg.model.num_frames, cfg.model.num_classes) == (64, 4, 8, 4)
    assert cfg.model.drop_path_rate == 0.2 and cfg.data.mean == [0.4] * 3 and cfg.data.std == [0.5] * 3
    assert cfg.data.train_scale == [32, 32] and cfg.train.epochs == 5  # the toy run's scales, the preset's recipe
    assert given_keys("finetune", keys) >= {"model.from_pretrained", "train.lr", "model.drop_path_rate"}
    cfg4, line4 = finetune_config("finetune", [*keys, "model.num_frames=4", "model.num_classes=4"])
    assert cfg4.model.num_frames == 4 and "4 frames at 32 px" in line4
    toy = tl.load_config("toy", [f"model.pretrained={TOY}"])  # without from_pretrained nothing is taken
    assert finetune_config("toy", [f"model.pretrained={TOY}"]) == (toy, "")


def test_the_preset_without_weights_is_one_line_naming_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"^model.from_pretrained=true \(the finetune preset\) starts from trained"):
        finetune_config("finetune", [f"data.root={tmp_path}"])
    out = train_cli(f"data.root={tmp_path}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "pass model.pretrained=" in out.stderr


def test_the_same_command_starts_from_a_hugging_face_repo_id_offline(my_videos, tmp_path):
    cache = tmp_path / "hf-cache"
    snapshot = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    hf_model().save_pretrained(snapshot)
    (snapshot / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(COMMIT)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = train_cli(f"data.root={my_videos}", f"model.pretrained={REPO}", "train.epochs=1", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (
        f"fine-tuning from '{REPO}' (hf: width 16, depth 2, 2 frames at 32 px): new head for 4 classes " in out.stdout
    )
    recorded = yaml.safe_load((tmp_path / "runs" / "finetune" / "config.yaml").read_text())
    assert recorded["data"]["mean"] == [0.5] * 3 and recorded["data"]["std"] == [0.25] * 3  # its preprocessor's
    model = tl.load_pretrained(tmp_path / "runs" / "finetune" / "best.pt")
    assert model.cfg.num_frames == 2 and model.classes == sorted(NEW_CLASSES) and len(LABELS) == 3


def test_from_a_timm_vit_the_line_names_what_the_file_does_not_record(tmp_path):
    torch.manual_seed(0)
    vit = tl.TimeSformer(tl.ModelConfig(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=4, num_frames=1,
                                        attention_type="space_only", num_classes=5))  # fmt: skip
    path = tmp_path / "vit.safetensors"
    save_file(vit.state_dict(), path)  # timm's names, nothing else: no heads, frames or scheme recorded
    cfg, line = finetune_config("finetune", [f"model.pretrained={path}", "model.num_classes=3"])
    assert line == (
        f"fine-tuning from '{path}' (timm: width 64, depth 1, 8 frames at 32 px): an image ViT inflated into "
        "divided_space_time, new head for 3 classes; the file does not record num_heads, attention_type, num_frames "
        "(assumed num_heads=1, attention_type=divided_space_time, num_frames=8: set them if they differ); "
        "backbone lr x0.1"
    )
    assert cfg.data.train_scale == [37, 46] and cfg.data.test_scale == 32  # 256-320 / 224 at 224 px, scaled
    cfg, line = finetune_config("finetune", [f"model.pretrained={path}", "model.num_classes=3", "model.num_heads=4"])
    assert cfg.model.num_heads == 4 and "(assumed attention_type=divided_space_time, num_frames=8: " in line
