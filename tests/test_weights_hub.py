"""Hugging Face hub ids, offline: a cache laid out as huggingface_hub leaves it, with HF_HUB_OFFLINE=1.

`models--org--tiny-timesformer/refs/main` names a commit; `snapshots/<commit>/` holds what
`TimesformerForVideoClassification.save_pretrained` writes plus a `preprocessor_config.json`. The deadline tests
point `HF_ENDPOINT` at a loopback socket that never answers.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from data_fixtures import pattern_frames, write_video
from huggingface_hub import constants
from transformers import TimesformerConfig, TimesformerForVideoClassification

import timesformer_lite as tl
from timesformer_lite.weights import WeightsError, config_to_hf, save_hf
from timesformer_lite.weights.fetch import STALL_ENV, TIMEOUT_ENV
from timesformer_lite.weights.hub import hub_folder, is_repo_id

ROOT = Path(__file__).resolve().parents[1]
REPO = "org/tiny-timesformer"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
LABELS = ["waving", "clapping", "jumping"]
CFG = dict(img_size=32, patch_size=16, num_frames=2, embed_dim=16, depth=2, num_heads=2, num_classes=3)


def hf_model(seed: int = 0) -> TimesformerForVideoClassification:
    torch.manual_seed(seed)
    hf_cfg = TimesformerConfig(**config_to_hf(tl.ModelConfig(drop_path_rate=0.0, **CFG), dict(enumerate(LABELS))))
    hf = TimesformerForVideoClassification(hf_cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return hf


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A hub cache holding REPO at COMMIT (main), used offline; returns (cache, the HF model in it)."""
    cache = tmp_path / "hf-cache"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    hf = hf_model()
    hf.save_pretrained(snapshot)
    (snapshot / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for name, value in (("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read at import: set for this process too
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path / "hf-cache")  # no local folder named like the repo
    return cache, hf


def test_repo_ids_are_told_from_paths():
    assert is_repo_id("facebook/timesformer-base-finetuned-k400") and is_repo_id("fcakyon/timesformer-large.v2")
    for path in ("runs/best.pt", "a/b/c", "./org/name", "/org/name", "k400.safetensors", "org/", "org/k.pyth"):
        assert not is_repo_id(path), path


def test_a_repo_id_loads_from_the_cache_with_its_labels_normalisation_and_hf_logits(hub_cache):
    cache, hf = hub_cache
    model = tl.load_pretrained(REPO)
    assert model.classes == LABELS and model.load_report.ok and model.load_report.assumed == []
    assert model.run_config.data.mean == [0.5] * 3 and model.run_config.data.std == [0.25] * 3
    snapshot = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    assert model.load_report.notes[0] == f"Hugging Face repo '{REPO}' (revision main), read from '{snapshot}'"
    video = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        expected = hf(pixel_values=video).logits
        assert expected.abs().max() > 0.5
        assert (model(video) - expected).abs().max().item() <= 1e-5


def test_a_revision_picks_that_snapshot_and_an_unknown_one_is_one_line(hub_cache):
    model = tl.load_pretrained(REPO, revision=COMMIT)
    assert model.classes == LABELS and f"(revision {COMMIT})" in model.load_report.notes[0]
    with pytest.raises(WeightsError, match=r"not in the cache .* while HF_HUB_OFFLINE=1 is set; connect once"):
        tl.load_pretrained(REPO, revision="v9")


def test_a_repo_missing_from_the_offline_cache_is_one_line_naming_the_fix(hub_cache):
    with pytest.raises(WeightsError) as e:
        tl.load_pretrained("org/not-downloaded")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("'org/not-downloaded' is not a local path, and Hugging Face repo 'org/not-downloaded'")
    assert str(hub_cache[0]) in message and "HF_HUB_OFFLINE=1" in message


def test_only_config_and_weight_files_are_fetched(hub_cache, monkeypatch):
    import huggingface_hub

    asked = []
    real = huggingface_hub.hf_hub_download

    def spy(repo_id, filename, **kwargs):
        asked.append(filename)
        return real(repo_id, filename, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    tl.load_pretrained(REPO)
    assert asked == ["config.json", "preprocessor_config.json", "model.safetensors"]  # never *.py


def test_a_local_folder_named_like_the_repo_wins_and_the_report_says_so(hub_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = tl.TimeSformer(tl.ModelConfig(drop_path_rate=0.0, **CFG)).eval()
    save_hf(REPO, local, classes=["x", "y", "z"])  # ./org/tiny-timesformer
    model = tl.load_pretrained(REPO)
    assert model.classes == ["x", "y", "z"]
    assert model.load_report.notes[0] == (
        f"'{REPO}' is the local path '{(tmp_path / REPO).resolve()}' (not the Hugging Face repo '{REPO}')"
    )
    with pytest.raises(WeightsError, match="revision='main' is for Hugging Face repo ids; 'org/tiny-timesformer' is a"):
        tl.load_pretrained(REPO, revision="main")


def test_predict_cli_takes_a_repo_id_offline(hub_cache, tmp_path):
    cache, _ = hub_cache
    video = write_video(tmp_path / "clip.mp4", pattern_frames(8, 40, 32))
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "timesformer_lite", "predict", str(video), "--checkpoint", REPO, "--json"]
    cmd += ["--top-k", "3", "--device", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(k["label"] for k in row["top_k"]) == sorted(LABELS)  # config.json's id2label, not class_i
    assert sum(k["probability"] for k in row["top_k"]) == pytest.approx(1.0, abs=1e-4)


def test_a_stalled_hub_ends_at_the_overall_deadline_in_one_line(tmp_path):
    """huggingface_hub alone retries a silent server for minutes (a 60 s metadata timeout, five times)."""
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TIMESFORMER_LITE_"))}
        env |= {"HF_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}", "HF_HUB_CACHE": str(tmp_path / "hub"),
                STALL_ENV: "1", TIMEOUT_ENV: "3", "PYTHONPATH": str(ROOT)}  # fmt: skip
        start = time.monotonic()
        cmd = [sys.executable, "-m", "timesformer_lite", "convert", REPO, "out.safetensors"]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        elapsed = time.monotonic() - start
    assert out.returncode == 2 and out.stderr.strip() == (
        f"timesformer-lite convert: error: Hugging Face repo '{REPO}': config.json did not arrive within the overall "
        f"deadline of 3 s ({TIMEOUT_ENV}); the hub is slow or unreachable: try again, or raise {TIMEOUT_ENV} (each "
        f"read waits up to 1 s, {STALL_ENV})"
    )
    assert elapsed < 30, elapsed  # 3 s of waiting plus the interpreter's start on a loaded machine


def test_the_hub_reads_wait_at_most_the_stall_deadline_unless_huggingface_hub_is_told_otherwise(hub_cache, monkeypatch):
    import huggingface_hub

    seen = []

    def spy(repo_id, filename, **kwargs):
        seen.append((kwargs["etag_timeout"], constants.HF_HUB_DOWNLOAD_TIMEOUT))
        return real(repo_id, filename, **kwargs)

    real = huggingface_hub.hf_hub_download
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    monkeypatch.delenv("HF_HUB_DOWNLOAD_TIMEOUT", raising=False)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    before = constants.HF_HUB_DOWNLOAD_TIMEOUT
    hub_folder(REPO, stall=4.0)
    restored = constants.HF_HUB_DOWNLOAD_TIMEOUT
    assert set(seen) == {(4.0, 4.0)} and restored == before  # set for the call only
    seen.clear()
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "25")
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "20")
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 20)
    hub_folder(REPO, stall=4.0)
    assert set(seen) == {(20, before)}  # the user's settings stand
