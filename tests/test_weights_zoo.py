"""The zoo's table: entries, class lists, docs, the shipped toy model, and loading an entry by name.

Downloads themselves (faults, deadlines, cache verification) are tests/test_weights_download.py. Nothing leaves
127.0.0.1: `TIMESFORMER_LITE_ZOO_MIRROR` points every zoo URL at a server the test starts.
"""

import os
import socket
from pathlib import Path

import pytest
import tomllib
import torch
from zoo_server import Route, ZooServer, official_file, run_cli

import timesformer_lite as tl
from timesformer_lite.assets import toy_model_path
from timesformer_lite.cli import main as cli
from timesformer_lite.data import TOY_CLASSES
from timesformer_lite.train.trainer import build_model
from timesformer_lite.weights import WeightsError, zoo

ROOT = Path(__file__).resolve().parents[1]


def test_an_unknown_name_lists_the_zoo():
    listed = "no zoo entry 'nope/x'; the zoo has timesformer-lite/toy-divided, paddlevideo/timesformer-k400, "
    with pytest.raises(WeightsError, match=listed):
        zoo.download("nope/x")


def test_the_list_names_every_entry_with_classes_accuracy_and_url(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    assert cli(["download", "--list"]) == 0
    out = capsys.readouterr().out
    for e in zoo.ZOO.values():
        assert e.name in out and e.url in out
    assert "K400 top-1 77.08 (1 clip x 3 crops" in out and "SSv2 top-1 62.0, top-5 87.5" in out


def test_the_table_has_the_reference_checkpoints_with_what_the_loader_needs():
    assert set(zoo.ZOO) == {
        "timesformer-lite/toy-divided",
        "paddlevideo/timesformer-k400", "paddlevideo/vit-base-patch16-224", "timm/jx-vit-base-p16-224",
        *(f"facebookresearch/timesformer{v}-{d}" for v in ("", "-hr", "-l") for d in ("k400", "k600", "ssv2")),
    }  # fmt: skip
    for e in zoo.ZOO.values():
        if e.shipped is not None:  # the package's own file: our format, everything recorded in it
            assert e.source == "ours" and e.url == "" and e.overrides == {} and e.classes is None
            continue
        assert e.source in tl.weights.SOURCES and e.url.startswith("https://") and e.overrides["num_heads"] == 12
        assert e.classes is None or e.classes in zoo.CLASS_LISTS
        if e.classes is None:  # ImageNet inits: the scheme and frames of the reference recipe
            assert e.overrides["attention_type"] == "divided_space_time" and e.overrides["num_frames"] == 8
    assert zoo.ZOO["paddlevideo/timesformer-k400"].filename == "TimeSformer_k400.pdparams"
    assert zoo.ZOO["facebookresearch/timesformer-hr-ssv2"].filename == "TimeSformer_divST_16_448_SSv2.pyth"


def test_docs_list_every_zoo_entry_with_its_url():
    docs = (ROOT / "docs" / "weights.md").read_text()
    for e in zoo.ZOO.values():
        assert f"| `{e.name}` |" in docs and e.url in docs and e.accuracy in docs


@pytest.fixture
def bare_home(tmp_path):
    """An environment with a fresh HOME and no cache variable: no cache folder exists, and none may appear."""
    env = {k: v for k, v in os.environ.items() if k != zoo.CACHE_ENV}
    env["HOME"] = str(tmp_path / "home")
    return env


def test_the_shipped_toy_model_is_in_the_zoo_and_served_from_the_package_offline(tmp_path, bare_home):
    out = run_cli("download", "--list", env=bare_home, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    listing = out.stdout.splitlines()
    assert listing[0] == "timesformer-lite/toy-divided  (in the package)"
    assert listing[3].strip() == str(toy_model_path())
    out = run_cli("download", "timesformer-lite/toy-divided", env=bare_home, cwd=tmp_path)
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, str(toy_model_path()), "")
    assert not (tmp_path / "home").exists()  # nothing was cached, nothing was fetched
    copy = zoo.download("timesformer-lite/toy-divided", tmp_path / "here")  # --dir asks for a copy
    assert copy == tmp_path / "here" / "toy_divided.safetensors" and copy.read_bytes() == toy_model_path().read_bytes()


def test_the_toy_model_loads_by_name_and_starts_a_training_with_a_new_head(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    model = tl.load_pretrained("timesformer-lite/toy-divided")
    shipped = tl.load_pretrained(toy_model_path())
    assert model.classes == list(TOY_CLASSES) and model.cfg == tl.load_config("toy").model
    assert model.load_report.notes[0] == (
        f"zoo entry 'timesformer-lite/toy-divided' (shipped with the package), read from '{toy_model_path()}'"
    )
    video = torch.randn(2, 8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(video), shipped(video))
    cfg = tl.load_config("toy", ["model.pretrained=timesformer-lite/toy-divided", "model.num_classes=4"])
    started = build_model(cfg)
    assert started.cfg.num_classes == 4 and started.load_report.new_head
    kept = {k: v for k, v in started.state_dict().items() if not k.startswith("head.")}
    assert kept and all(torch.equal(v, shipped.state_dict()[k]) for k, v in kept.items())
    assert not (tmp_path / "cache").exists()


def test_class_lists_have_the_dataset_sizes_in_label_order_and_ship_as_package_data():
    lists = {name: zoo.class_list(name) for name in zoo.CLASS_LISTS}
    assert {k: len(v) for k, v in lists.items()} == {"kinetics400": 400, "kinetics600": 600, "ssv2": 174}
    for names in lists.values():
        assert len(set(names)) == len(names) and names == sorted(names)  # all three are sorted label orders
    k400, k600, ssv2 = lists["kinetics400"], lists["kinetics600"], lists["ssv2"]
    assert (k400[0], k400[116], k400[232], k400[399]) == ("abseiling", "eating spaghetti", "playing guitar", "zumba")
    assert (k600[124], k600[309]) == ("cutting apple", "passing american football (not in game)")
    assert (ssv2[0], ssv2[93]) == ("Approaching something with your camera", "Pushing something from left to right")
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "weights/classes/*.txt" in package_data["timesformer_lite"]


def test_a_zoo_name_loads_with_the_entrys_class_names_and_heads_and_the_report_says_where(tmp_path, monkeypatch):
    path, reference = official_file(tmp_path, 400)
    e = zoo.ZOO["facebookresearch/timesformer-k400"]
    s = ZooServer({f"{e.name}/{e.filename}": Route(path.read_bytes())})
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(zoo.MIRROR_ENV, s.url)
    try:
        model = tl.load_pretrained(e.name)
    finally:
        s.close()
    assert model.classes == zoo.class_list("kinetics400") and model.cfg.num_heads == 12
    assert model.load_report.ok and model.load_report.assumed == []  # heads came from the entry, not a guess
    cached = tmp_path / "cache" / e.name / e.filename
    assert model.load_report.notes[0] == f"zoo entry '{e.name}' ({s.url}/{e.name}/{e.filename}), read from '{cached}'"
    video = torch.randn(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(video), reference(video))


def test_official_files_get_class_names_when_told_the_dataset(tmp_path, capsys):
    path, _ = official_file(tmp_path, 174)
    assert tl.load_pretrained(path, num_heads=12).classes is None  # the file has none
    model = tl.load_pretrained(path, num_heads=12, classes="ssv2")
    assert model.classes == zoo.class_list("ssv2")
    with pytest.raises(WeightsError, match="classes='kinetics400' has 400 names; .* a head of 174 classes"):
        tl.load_pretrained(path, num_heads=12, classes="kinetics400")
    out = tmp_path / "ssv2.safetensors"
    assert cli(["convert", str(path), str(out), "num_heads=12", "--classes", "ssv2"]) == 0
    assert tl.load_pretrained(out).classes == zoo.class_list("ssv2")  # ours keeps them for every later command


def test_a_local_file_named_like_a_zoo_entry_wins_and_the_report_says_so(tmp_path, monkeypatch):
    path, _ = official_file(tmp_path, 3)
    monkeypatch.chdir(tmp_path)
    with socket.socket() as sock:  # a port nothing listens on: the entry must not be fetched
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv(zoo.MIRROR_ENV, f"http://127.0.0.1:{sock.getsockname()[1]}")
    local = Path("paddlevideo/timesformer-k400")
    local.parent.mkdir()
    path.rename(local)
    model = tl.load_pretrained("paddlevideo/timesformer-k400", num_heads=12)
    assert model.cfg.num_classes == 3 and model.classes is None  # the local file, not the entry's K400 list
    note = model.load_report.notes[0]
    assert note == f"'paddlevideo/timesformer-k400' is the local path '{local.resolve()}' (not the zoo entry " \
        "'paddlevideo/timesformer-k400')"  # fmt: skip
