"""The zoo: downloads from a loopback HTTP server (progress, resume, checksum, cache, offline), class lists, names.

Nothing leaves 127.0.0.1: the test entries point at a server this file starts, and the real table is only read.
"""

import hashlib
import socket
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import tomllib
import torch

import timesformer_lite as tl
from timesformer_lite.cli import main as cli
from timesformer_lite.weights import WeightsError, zoo

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Server:
    """Serves `files` (name -> bytes) with Range support; `drop_first` names files whose first answer stops
    half-way with the connection closed. `requests` logs (path, Range header) of every request."""

    def __init__(self, files: dict[str, bytes], drop_first: tuple[str, ...] = ()):
        self.files, self.drop = files, set(drop_first)
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(data) - start))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if name in server.drop:
                    server.drop.discard(name)
                    self.wfile.write(data[start : start + (len(data) - start) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def server():
    s = Server({"w.bin": PAYLOAD})
    yield s
    s.close()


def add_entry(monkeypatch, name: str, url: str, **fields) -> zoo.ZooEntry:
    entry = zoo.ZooEntry(name=name, url=url, source="official", **fields)
    monkeypatch.setitem(zoo.ZOO, name, entry)
    return entry


def test_a_download_shows_a_progress_bar_lands_in_the_cache_and_prints_its_sha256(server, cache, monkeypatch, capsys):
    add_entry(monkeypatch, "test/w", f"{server.url}/w.bin")
    path = zoo.download("test/w", progress=True)
    assert path == cache / "test" / "w" / "w.bin"
    assert path.read_bytes() == PAYLOAD and not path.with_name("w.bin.part").exists()
    err = capsys.readouterr().err
    assert "w.bin" in err and "100%" in err and "1.00M/1.00M" in err  # the tqdm bar, complete
    assert f"sha256 {hashlib.sha256(PAYLOAD).hexdigest()}" in err  # no published digest: printed to pin it
    assert server.requests == [("w.bin", None)]


def test_a_second_call_is_served_from_the_cache_without_touching_the_server(server, cache, monkeypatch):
    add_entry(monkeypatch, "test/w", f"{server.url}/w.bin")
    first = zoo.download("test/w", progress=False)
    second = zoo.download("test/w", progress=False)
    assert first == second and len(server.requests) == 1


def test_an_interrupted_transfer_resumes_with_a_range_request(cache, monkeypatch):
    s = Server({"w.bin": PAYLOAD}, drop_first=("w.bin",))
    try:
        add_entry(monkeypatch, "test/w", f"{s.url}/w.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest())
        path = zoo.download("test/w", progress=False)
    finally:
        s.close()
    assert path.read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    assert s.requests == [("w.bin", None), ("w.bin", f"bytes={half}-")]  # the second asks only for the rest


def test_a_partial_file_left_by_an_earlier_run_is_resumed_not_restarted(server, cache, monkeypatch):
    add_entry(monkeypatch, "test/w", f"{server.url}/w.bin")
    part = cache / "test" / "w" / "w.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:1000])
    assert zoo.download("test/w", progress=False).read_bytes() == PAYLOAD
    assert server.requests == [("w.bin", "bytes=1000-")]


def test_processes_loading_the_same_name_at_once_download_it_once(server, cache, monkeypatch):
    add_entry(monkeypatch, "test/w", f"{server.url}/w.bin")
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(zoo.download("test/w", progress=False))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 3 and all(p.read_bytes() == PAYLOAD for p in paths)
    assert server.requests == [("w.bin", None)]  # one transfer; the others waited for the lock, then found the file


def test_a_checksum_mismatch_deletes_the_file_and_says_so(server, cache, monkeypatch):
    add_entry(monkeypatch, "test/w", f"{server.url}/w.bin", sha256="0" * 64)
    with pytest.raises(WeightsError, match=r"has sha256 [0-9a-f]{64}, expected 0{64}; it was deleted"):
        zoo.download("test/w", progress=False)
    assert not (cache / "test" / "w" / "w.bin").exists() and not (cache / "test" / "w" / "w.bin.part").exists()


def test_a_hash_prefix_as_in_torch_hub_file_names_is_accepted(server, cache, monkeypatch):
    add_entry(monkeypatch, "test/w", f"{server.url}/w.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest()[:8])
    assert zoo.download("test/w", progress=False).stat().st_size == len(PAYLOAD)


def test_offline_is_one_clear_line_naming_the_url_and_the_fix(cache, monkeypatch, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    add_entry(monkeypatch, "test/w", f"http://127.0.0.1:{port}/w.bin")
    with pytest.raises(WeightsError, match=rf"cannot download test/w: http://127.0.0.1:{port}/w.bin is unreachable"):
        zoo.download("test/w", progress=False)
    assert cli(["download", "test/w"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "connect to the internet" in err and str(cache) in err


def test_download_dir_and_the_cli_print_the_path(server, tmp_path, cache, monkeypatch, capsys):
    add_entry(monkeypatch, "test/w", f"{server.url}/w.bin")
    assert cli(["download", "test/w", "--dir", str(tmp_path / "here"), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "here" / "w.bin")
    assert (tmp_path / "here" / "w.bin").read_bytes() == PAYLOAD and not cache.exists()


def test_an_unknown_name_lists_the_zoo():
    with pytest.raises(WeightsError, match="no zoo entry 'nope/x'; the zoo has paddlevideo/timesformer-k400, "):
        zoo.download("nope/x")


def test_the_list_names_every_entry_with_classes_accuracy_and_url(capsys):
    assert cli(["download", "--list"]) == 0
    out = capsys.readouterr().out
    for e in zoo.ZOO.values():
        assert e.name in out and e.url in out
    assert "K400 top-1 77.08 (1 clip x 3 crops" in out and "SSv2 top-1 62.0, top-5 87.5" in out


def test_the_table_has_the_reference_checkpoints_with_what_the_loader_needs():
    assert set(zoo.ZOO) == {
        "paddlevideo/timesformer-k400", "paddlevideo/vit-base-patch16-224", "timm/jx-vit-base-p16-224",
        *(f"facebookresearch/timesformer{v}-{d}" for v in ("", "-hr", "-l") for d in ("k400", "k600", "ssv2")),
    }  # fmt: skip
    for e in zoo.ZOO.values():
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


def official_file(tmp_path: Path, num_classes: int) -> tuple[Path, tl.TimeSformer]:
    """A tiny model saved as the official release does: `model_state` with every key prefixed `model.`."""
    torch.manual_seed(0)
    cfg = tl.ModelConfig(img_size=32, patch_size=16, num_frames=2, embed_dim=24, depth=1, num_heads=12,
                         num_classes=num_classes, drop_path_rate=0.0)  # fmt: skip
    model = tl.TimeSformer(cfg).eval()
    path = tmp_path / "tiny_K400.pyth"
    torch.save({"model_state": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path, model


def test_a_zoo_name_loads_with_the_entrys_class_names_and_heads_and_the_report_says_where(cache, tmp_path, monkeypatch):
    path, reference = official_file(tmp_path, 400)
    s = Server({"tiny_K400.pyth": path.read_bytes()})
    try:
        add_entry(monkeypatch, "test/tiny-k400", f"{s.url}/tiny_K400.pyth", overrides={"num_heads": 12},
                  classes="kinetics400")  # fmt: skip
        model = tl.load_pretrained("test/tiny-k400")
    finally:
        s.close()
    assert model.classes == zoo.class_list("kinetics400") and model.cfg.num_heads == 12
    assert model.load_report.ok and model.load_report.assumed == []  # heads came from the entry, not a guess
    assert model.load_report.notes[0].startswith("zoo entry 'test/tiny-k400' (http://127.0.0.1:")
    assert str(cache / "test" / "tiny-k400" / "tiny_K400.pyth") in model.load_report.notes[0]
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
    entry = zoo.ZOO["paddlevideo/timesformer-k400"]
    monkeypatch.setitem(zoo.ZOO, entry.name, replace(entry, url="http://127.0.0.1:9/never-fetched"))
    local = Path("paddlevideo/timesformer-k400")
    local.parent.mkdir()
    path.rename(local)
    model = tl.load_pretrained("paddlevideo/timesformer-k400", num_heads=12)
    assert model.cfg.num_classes == 3 and model.classes is None  # the local file, not the entry's K400 list
    note = model.load_report.notes[0]
    assert note == f"'paddlevideo/timesformer-k400' is the local path '{local.resolve()}' (not the zoo entry " \
        "'paddlevideo/timesformer-k400')"  # fmt: skip
