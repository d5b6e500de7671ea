"""The trained toy model shipped in timesformer_lite/assets/ loads, says what made it, and still classifies toy motions.

Notebooks 06-09 show its curves, maps and predictions under the smoke preset, so a change to the model code that
breaks these weights must fail here first. The test clips are the first 5 test clips of every class of the toy
preset's dataset (a clip depends only on its seed, split, class and index, so a dataset of 100 clips per class has
exactly those), generated in a few seconds.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import tomllib
from safetensors import safe_open

import timesformer_lite as tl
from timesformer_lite import train
from timesformer_lite.assets import toy_history, toy_model_path
from timesformer_lite.data import TOY_CLASSES, ensure_toy_data


def test_the_shipped_model_is_small_and_names_the_command_and_date_that_made_it():
    path = toy_model_path()
    assert path.stat().st_size < 1_000_000, path.stat().st_size
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    shipped = project["tool"]["setuptools"]["package-data"]["timesformer_lite"]
    assert {"assets/*.safetensors", "assets/*.json"} <= set(shipped)  # in the wheel, not only in a checkout
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    assert metadata["command"].startswith(("make run", "papermill notebooks/90_full_training.ipynb")), metadata
    datetime.date.fromisoformat(metadata["date"])
    history = toy_history()
    assert (history["command"], history["date"]) == (metadata["command"], metadata["date"])
    toy = tl.load_config("toy")
    model = tl.load_pretrained(path)
    assert model.cfg == toy.model and model.classes == list(TOY_CLASSES)
    assert len(history["history"]) == history["epochs"] == toy.train.epochs
    assert history["test_top1"] >= 0.9 and history["history"][-1]["val_top1"] >= 0.9


@pytest.mark.slow
def test_the_shipped_model_classifies_the_toy_test_clips(tmp_path):
    toy = tl.load_config("toy").data
    root = tmp_path / "toy_test"
    ensure_toy_data(root, per_class=100, frames=toy.toy_frames, size=toy.toy_size, seed=toy.toy_seed)
    result, _ = train.test_checkpoint(
        toy_model_path(), [f"data.root={root}", "data.toy_per_class=100"], out_dir=tmp_path
    )
    assert result.num_videos == 50
    assert result.top1 >= 0.9, result.top1
    assert result.within_pair >= 0.9, result.within_pair
