"""Prediction on one's own videos: the checkpoint's protocol, views, averaging, folders, the CLI, explanations."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import pattern_frames, write_video
from PIL import Image

import timesformer_lite as tl
from timesformer_lite.cli import main as cli
from timesformer_lite.data import build_dataset, build_loader, linspace_indices, read_frames
from timesformer_lite.data.transforms import normalize, resize_short_side, to_float, uniform_crops
from timesformer_lite.predict import inference_config, predict, predict_video
from timesformer_lite.train import evaluate
from timesformer_lite.weights.hf import save_hf

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [f"motion_{k}" for k in range(10)]


def smoke_model(**data) -> tl.TimeSformer:
    """A seeded smoke-size model whose run_config tests the reference 1x3 linspace protocol (plus `data`)."""
    overrides = ["data.test_sampling=linspace", "data.num_crops=3", *(f"data.{k}={v}" for k, v in data.items())]
    cfg = tl.load_config("smoke", overrides)
    torch.manual_seed(0)
    model = tl.TimeSformer(cfg.model).eval()
    model.run_config, model.classes = cfg, list(CLASSES)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A checkpoint and three videos (64x48 landscape, 40x56 portrait, 11 frames) plus one unreadable file."""
    root = tmp_path_factory.mktemp("predict")
    ckpt = tl.save_model(root / "smoke.safetensors", smoke_model())
    videos = root / "videos"
    (videos / "sub").mkdir(parents=True)
    write_video(videos / "a.mp4", pattern_frames(20, 64, 48, seed=0))
    write_video(videos / "sub" / "b.mkv", pattern_frames(11, 40, 56, seed=1))
    write_video(videos / "c.avi", pattern_frames(16, 48, 32, seed=2), codec="mpeg4")
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    (videos / "notes.txt").write_text("not a video extension: ignored")
    return {"ckpt": ckpt, "videos": videos, "a": videos / "a.mp4", "b": videos / "sub" / "b.mkv"}


def manual_probs(path: Path, n: int, model: tl.TimeSformer, mean, std, size: int = 32, T: int = 4) -> torch.Tensor:
    """The reference test protocol written out by hand for a video of `n` frames: linspace frames, short side
    `size`, 3 UniformCrops, normalise, score, average logits, softmax."""
    frames = read_frames(path, linspace_indices(n, T))
    x = resize_short_side(to_float(frames), size)
    views = torch.stack([normalize(c, mean, std) for c in uniform_crops(x, size)])  # (3, T, C, H, W)
    with torch.no_grad():
        return model(views).mean(0).softmax(-1)


def test_one_file_gives_sorted_top_k_from_the_checkpoint_protocol(files):
    preds = predict(files["a"], files["ckpt"], top_k=3)
    expected = manual_probs(files["a"], 20, smoke_model(), [0.5] * 3, [0.5] * 3)
    top = expected.topk(3)
    assert [label for label, _ in preds] == [CLASSES[k] for k in top.indices.tolist()]
    np.testing.assert_allclose([p for _, p in preds], top.values.numpy(), atol=1e-5)
    assert all(a[1] >= b[1] for a, b in zip(preds, preds[1:])) and sum(p for _, p in preds) <= 1.0
    everything = predict(files["a"], files["ckpt"], top_k=50)  # capped at the 10 classes
    assert len(everything) == 10 and sum(p for _, p in everything) == pytest.approx(1.0, abs=1e-5)


def test_the_checkpoints_own_normalisation_changes_the_result_and_matches_a_manual_pipeline(files, tmp_path):
    other = tl.save_model(tmp_path / "other.safetensors", smoke_model(mean=[0.2, 0.4, 0.6], std=[0.1, 0.2, 0.3]))
    probs = dict(predict(files["b"], other, top_k=10))
    base = dict(predict(files["b"], files["ckpt"], top_k=10))
    expected = manual_probs(files["b"], 11, smoke_model(), [0.2, 0.4, 0.6], [0.1, 0.2, 0.3])
    np.testing.assert_allclose([probs[c] for c in CLASSES], expected.numpy(), atol=1e-5)
    assert max(abs(probs[c] - base[c]) for c in CLASSES) > 1e-3


@pytest.mark.parametrize("average", ["logits", "softmax"])
def test_views_are_counted_and_averaged_exactly_as_evaluate_does(files, tmp_path, average):
    model = tl.load_pretrained(files["ckpt"])
    batches = []
    model.register_forward_hook(lambda m, args, out: batches.append(args[0].shape[0]))
    videos = [files["a"], files["b"]]
    (tmp_path / "test.txt").write_text("".join(f"{p} 0\n" for p in videos))
    for views, n in (("1x1", 1), ("1x3", 3), ("2x3", 6)):
        batches.clear()
        cfg = inference_config(model, views)
        preds = [predict_video(p, model, cfg, top_k=10, average=average) for p in videos]
        assert batches == [n, n] and all(p.views == (int(views[0]), int(views[2])) for p in preds)
        clips, crops = views.split("x")
        data_cfg = tl.load_config(
            model.run_config,
            ["data.dataset=list", f"data.root={tmp_path}", "data.classes=", f"data.num_clips={clips}"]
            + [f"data.num_crops={crops}"],
        )
        loader = build_loader(build_dataset(data_cfg, "test"), 2, shuffle=False, num_workers=0, seed=0)
        result = evaluate(model, loader, device=torch.device("cpu"), num_classes=10, average=average)
        torch.testing.assert_close(torch.stack([p.scores for p in preds]), result.scores, atol=1e-6, rtol=1e-6)
        for p in preds:
            assert p.probabilities.sum().item() == pytest.approx(1.0, abs=1e-5)
            assert len(p.frames) == int(clips) and all(len(f) == 4 for f in p.frames)


def test_a_folder_maps_every_readable_video_and_skips_the_unreadable_one_with_a_warning(files):
    with pytest.warns(RuntimeWarning, match=r"skipping video '.*broken\.mp4' is not a video"):
        preds = predict(files["videos"], files["ckpt"], top_k=2)
    expected = [str(files["videos"] / n) for n in ("a.mp4", "c.avi", "sub/b.mkv")]
    assert list(preds) == expected
    assert preds[str(files["a"])] == predict(files["a"], files["ckpt"], top_k=2)
    assert all(len(v) == 2 for v in preds.values())


def test_a_model_without_a_recorded_protocol_gets_the_reference_one(files, tmp_path):
    cfg = tl.load_config("smoke", ["data.mean=[0.3,0.3,0.3]", "data.std=[0.2,0.2,0.2]", "data.num_crops=1"])
    torch.manual_seed(0)
    bare = tl.TimeSformer(cfg.model).eval()
    ref = inference_config(bare).data
    assert (ref.test_sampling, ref.num_clips, ref.num_crops, ref.test_scale) == ("linspace", 1, 3, 32)
    assert ref.mean == [0.45] * 3 and ref.std == [0.225] * 3
    preds = predict(files["a"], bare, top_k=10)
    assert [label for label, _ in preds][0].startswith("class_")
    expected = manual_probs(files["a"], 20, bare, [0.45] * 3, [0.225] * 3)
    np.testing.assert_allclose([dict(preds)[f"class_{k}"] for k in range(10)], expected.numpy(), atol=1e-5)
    # a Hugging Face folder records mean/std (preprocessor_config.json) but no sampling or views
    bare.run_config = cfg
    hf = tl.load_pretrained(save_hf(tmp_path / "hf", bare))
    hf_data = inference_config(hf).data
    assert (hf_data.test_sampling, hf_data.num_crops, hf_data.mean) == ("linspace", 3, [0.3] * 3)
    assert inference_config(hf, "2x1").data.num_clips == 2


def test_the_model_mode_is_restored_and_bad_arguments_name_the_fix(files):
    model = tl.load_pretrained(files["ckpt"]).train()
    predict(files["a"], model, top_k=1)
    assert model.training
    for views in ("3", "1x2", "0x3", "axb"):
        with pytest.raises(ValueError, match=f"views={views!r}|views=.*crops"):
            predict(files["a"], model, views=views)
    with pytest.raises(ValueError, match="average='median' is not one of logits, softmax"):
        predict(files["a"], model, average="median")
    with pytest.raises(FileNotFoundError, match="'nowhere.mp4' does not exist"):
        predict("nowhere.mp4", model)
    with pytest.raises(tl.data.VideoReadError, match="broken.mp4' is not a video"):
        predict(files["videos"] / "broken.mp4", model)


def test_explain_writes_a_png_and_a_gif_of_the_centre_view_per_video(files, tmp_path):
    out = tmp_path / "explain"
    preds = predict(files["videos"] / "sub", files["ckpt"], explain=out)
    assert list(preds) == [str(files["b"])]
    predict(files["a"], files["ckpt"], views="1x1", explain=out)
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4.gif", "a.mp4.png", "b.mkv.gif", "b.mkv.png"]
    with Image.open(out / "b.mkv.gif") as gif:
        assert gif.n_frames == 4 and gif.size == (32, 32)  # T frames of the 32x32 centre crop
    with Image.open(out / "b.mkv.png") as png:
        width, height = png.size
        assert width > 4 * 100 and height > 100  # four panels, one per frame


def test_cli_prints_a_table_per_video_and_reports_skipped_files(files, tmp_path, capsys):
    assert cli(["predict", str(files["videos"]), "--checkpoint", str(files["ckpt"]), "--top-k", "2"]) == 0
    out, err = capsys.readouterr()
    expected = predict(files["a"], files["ckpt"], top_k=2)
    assert f"{files['a']}  (1 clip x 3 crops = 3 views, logits averaged)" in out
    assert f"  1. {expected[0][0]}  {expected[0][1]:6.1%}" in out
    assert out.count("  2. ") == 3
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "skipped: video" in lines[0] and "broken.mp4" in lines[0]
    assert lines[1] == "timesformer-lite predict: 3 predicted, 1 unreadable skipped"


def test_cli_json_lines_parse_and_carry_views_and_explanations(files, tmp_path, capsys):
    args = ["predict", str(files["a"]), str(files["b"]), "--checkpoint", str(files["ckpt"]), "--json"]
    assert cli([*args, "--views", "2x1", "--average", "softmax", "--explain", str(tmp_path / "x")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in rows] == [str(files["a"]), str(files["b"])]
    expected = predict(files["a"], files["ckpt"], views="2x1", average="softmax")
    assert [(e["label"], e["probability"]) for e in rows[0]["top_k"]] == expected
    assert rows[0]["views"] == [2, 1] and rows[0]["average"] == "softmax"
    assert rows[1]["explained"] == [str(tmp_path / "x" / "b.mkv.png"), str(tmp_path / "x" / "b.mkv.gif")]


@pytest.mark.parametrize(
    "name, cause",
    [("missing.mp4", "does not exist"), ("broken.mp4", "is not a video FFmpeg can read"), ("empty", "no video files")],
)
def test_cli_bad_inputs_exit_non_zero_with_one_line_naming_the_file(files, tmp_path, capsys, name, cause):
    target = files["videos"] / name
    if name == "empty":
        target = tmp_path / "empty"
        target.mkdir()
    assert cli(["predict", str(target), "--checkpoint", str(files["ckpt"])]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and str(target) in err and cause in err


def test_cli_bad_named_file_fails_the_run_but_the_others_are_still_predicted(files, capsys):
    code = cli(["predict", str(files["a"]), str(files["videos"] / "broken.mp4"), "--checkpoint", str(files["ckpt"])])
    out, err = capsys.readouterr()
    assert code == 1 and str(files["a"]) in out and "error: video" in err and "broken.mp4" in err


def test_cli_entry_point_reports_a_bad_view_spec_and_a_missing_checkpoint_in_one_line(files, tmp_path):
    def run(*args):
        cmd = [sys.executable, "-m", "timesformer_lite", "predict", str(files["a"]), *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)

    bad_views = run("--checkpoint", str(files["ckpt"]), "--views", "2y3")
    assert bad_views.returncode == 2 and bad_views.stdout == ""
    assert bad_views.stderr.strip() == (
        "timesformer-lite predict: error: views='2y3' must be CLIPSxCROPS, e.g. 1x3 or 2x3"
    )
    missing = run("--checkpoint", str(tmp_path / "none.safetensors"))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "none.safetensors" in missing.stderr
