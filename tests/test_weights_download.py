"""Downloads you can trust: `timesformer-lite download` against a loopback server that misbehaves on purpose.

`TIMESFORMER_LITE_ZOO_MIRROR` points the real zoo entries at `zoo_server.ZooServer` (nothing is monkeypatched);
the CLI runs in its own process, as a user runs it. Each fault of issue 24 has its test: an HTML page, a body cut
short, a 206 at the wrong offset, a 200 to a ranged request, a stale `.part` that is not a prefix, a trickle (stall
and overall deadlines), a corrupted cached file (with and without a published digest), and the listing's state.
"""

import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from zoo_server import ETAG, Route, ZooServer, official_file, run_cli

from timesformer_lite.cli import main as cli
from timesformer_lite.weights import WeightsError, zoo
from timesformer_lite.weights.download import listing
from timesformer_lite.weights.fetch import STALL_ENV, TIMEOUT_ENV, Deadlines, fetch

K400 = zoo.ZOO["facebookresearch/timesformer-k400"]  # no published digest: checked by format
TIMM = zoo.ZOO["timm/jx-vit-base-p16-224"]  # the one with a published digest (prefix 80ecf9dd)
ERROR = "timesformer-lite download: error: "  # how the CLI prefixes the one line of an error


def where(e: zoo.ZooEntry) -> str:
    return f"{e.name}/{e.filename}"


@pytest.fixture(scope="module")
def body(tmp_path_factory) -> bytes:
    """A real (tiny) official `.pyth`: what the K400 entry's file must look like, about 80 kB."""
    path, _ = official_file(tmp_path_factory.mktemp("payload"), 400)
    return path.read_bytes()


@pytest.fixture
def serve():
    """`serve(routes, **kw)` starts a `ZooServer`; every one is closed after the test."""
    servers = []

    def start(routes: dict[str, Route], **kw) -> ZooServer:
        servers.append(ZooServer(routes, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def user(tmp_path):
    """`user(server, *args, **env)` runs `timesformer-lite ARGS` with the cache in tmp_path and the mirror set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIMESFORMER_LITE_")}
    env[zoo.CACHE_ENV] = str(tmp_path / "cache")

    def run(server: ZooServer | None, *args: str, **extra: str):
        mirror = {zoo.MIRROR_ENV: server.url} if server is not None else {}
        return run_cli(*args, env={**env, **mirror, **extra}, cwd=tmp_path, timeout=60)

    return run


def cached(tmp_path: Path, e: zoo.ZooEntry) -> Path:
    return tmp_path / "cache" / e.name / e.filename


def leftovers(tmp_path: Path, e: zoo.ZooEntry) -> list[str]:
    folder = cached(tmp_path, e).parent
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def test_a_download_is_checked_renamed_recorded_then_served_verified_from_the_cache(body, serve, user, tmp_path):
    s = serve({where(K400): Route(body)})
    out = user(s, "download", K400.name, "--no-progress")
    digest = hashlib.sha256(body).hexdigest()
    assert (out.returncode, out.stdout.strip()) == (0, str(cached(tmp_path, K400))), out.stderr
    assert (
        out.stderr.strip() == f"{K400.name}: sha256 {digest} (its source publishes none; compare it to pin this file)"
    )
    assert cached(tmp_path, K400).read_bytes() == body
    assert leftovers(tmp_path, K400) == [K400.filename, f"{K400.filename}.sha256"]  # no .part, no .part.json
    assert (tmp_path / "cache" / K400.name / f"{K400.filename}.sha256").read_text() == f"{digest}  {K400.filename}\n"
    listing = user(s, "download", "--list").stdout.splitlines()
    assert f"{K400.name}  (downloaded, verified)" in listing
    assert f"    {s.url}/{where(K400)}" in listing and listing[-1].startswith(f"mirror: {s.url} (")
    assert s.requests == [(where(K400), None, None)]


def in_process(monkeypatch, tmp_path: Path, server: ZooServer) -> None:
    """This process's zoo: the cache in tmp_path, the mirror at `server`."""
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(zoo.MIRROR_ENV, server.url)


def corrupt(path: Path) -> None:
    """Flip one byte in the middle, keeping the size and the modification time (what a stat check would miss)."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_corrupted_cached_file_is_named_removed_and_downloaded_again_by_the_next_load(body, serve, user, tmp_path,
                                                                                       monkeypatch):  # fmt: skip
    s = serve({where(K400): Route(body)})
    in_process(monkeypatch, tmp_path, s)
    assert zoo.download(K400.name, progress=False) == zoo.download(K400.name) == cached(tmp_path, K400)
    assert len(s.requests) == 1  # the second call verified the cached file: no request
    corrupt(cached(tmp_path, K400))
    bad = hashlib.sha256(cached(tmp_path, K400).read_bytes()).hexdigest()
    good = hashlib.sha256(body).hexdigest()
    listing = user(s, "download", "--list").stdout
    problem = f"has sha256 {bad}, not the {good} recorded when it was downloaded"
    assert f"{K400.name}  (downloaded, but it {problem}: the next use fetches it again)" in listing
    out = user(s, "convert", K400.name, "k400.safetensors")  # a load by name, as predict/test/train do
    assert out.returncode == 0, out.stderr
    assert f"{K400.name}: the cached file '{cached(tmp_path, K400)}' {problem}; removed it, downloading it again" \
        in out.stderr.splitlines()  # fmt: skip
    assert cached(tmp_path, K400).read_bytes() == body and (tmp_path / "k400.safetensors").is_file()
    assert len(s.requests) == 2


def test_a_cached_file_failing_its_published_digest_is_removed_and_a_wrong_download_is_not_kept(serve, user, tmp_path,
                                                                                                monkeypatch):  # fmt: skip
    wrong = official_file(tmp_path, 3, name="x.pth")[0].read_bytes()  # a fine torch file, but not timm's
    s = serve({where(TIMM): Route(wrong)})
    cached(tmp_path, TIMM).parent.mkdir(parents=True)
    cached(tmp_path, TIMM).write_bytes(wrong)
    digest = hashlib.sha256(wrong).hexdigest()
    in_process(monkeypatch, tmp_path, s)
    assert f"(downloaded, but it has sha256 {digest}, not the published 80ecf9dd" in listing()
    out = user(s, "download", TIMM.name)
    removed, error = out.stderr.strip().splitlines()
    assert out.returncode == 2 and removed.endswith("not the published 80ecf9dd; removed it, downloading it again")
    assert error == ERROR + (
        f"{TIMM.name}: the downloaded file has sha256 {digest}, not the published 80ecf9dd; it was deleted (damaged "
        f"on the way, or changed on the server at {s.url}/{where(TIMM)}): download it again"
    )
    assert leftovers(tmp_path, TIMM) == []


@pytest.mark.parametrize(
    "route, requests, message",
    [
        (dict(mode="html"), 1, "{url} sent an HTML page (a login, error or consent page?), not a .pyth file; "
         "nothing was saved. Check that the URL serves the file itself (or that the zoo mirror does), then download "
         "again"),
        (dict(mode="short", etag=None), 2, "downloading {name} stopped at {half} of {size} bytes (the connection "
         "closed early); nothing was saved as '{file}': run the same command again (the server offers no resume: "
         "it starts over)"),
    ],
    ids=["html-page", "short-body"],
)  # fmt: skip
def test_a_page_or_a_short_body_is_refused_in_one_line_and_nothing_is_kept(body, serve, user, tmp_path, route, requests,
                                                                          message):  # fmt: skip
    s = serve({where(K400): Route(body, **route)})
    out = user(s, "download", K400.name)
    expected = message.format(url=f"{s.url}/{where(K400)}", name=K400.name, half=len(body) // 2, size=len(body),
                              file=K400.filename)  # fmt: skip
    expected = expected if "{url}" not in message else f"{K400.name}: {expected}"
    assert (out.returncode, out.stderr.strip()) == (2, ERROR + expected)
    assert leftovers(tmp_path, K400) == [] and len(s.requests) == requests


@pytest.mark.parametrize(
    "mode, ranges",
    [
        ("good", [None, "bytes={half}-"]),  # a broken connection, resumed with If-Range
        ("wrong-range", [None, "bytes={half}-", None]),  # the 206 starts elsewhere: start again from byte 0
        ("ignore-range", [None, "bytes={half}-"]),  # a 200 to the ranged request: its body replaces the .part
    ],
)
def test_a_broken_transfer_resumes_only_onto_the_same_bytes(body, serve, user, tmp_path, mode, ranges):
    s = serve({where(K400): Route(body, mode=mode, cut_first=True)})
    out = user(s, "download", K400.name)
    assert out.returncode == 0, out.stderr
    assert cached(tmp_path, K400).read_bytes() == body
    half = len(body) // 2
    expected = [(where(K400), r and r.format(half=half), r and ETAG) for r in ranges]
    assert s.requests == expected


def test_a_stale_part_that_is_not_a_prefix_is_never_resumed_onto(body, serve, user, tmp_path, monkeypatch):
    s = serve({where(K400): Route(body)})
    part = cached(tmp_path, K400).with_name(K400.filename + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\x00" * 1000)  # bytes of another version of the file
    meta = part.with_name(part.name + ".json")
    meta.write_text(f'{{"url": "{s.url}/{where(K400)}", "validator": "\\"v0\\""}}')
    assert user(s, "download", K400.name).returncode == 0
    assert cached(tmp_path, K400).read_bytes() == body
    assert s.requests == [(where(K400), "bytes=1000-", '"v0"')]  # If-Range of another version: the server sent it all
    cached(tmp_path, K400).unlink()
    part.write_bytes(b"\x00" * 1000)  # and no record of where it came from (an older version of this package)
    in_process(monkeypatch, tmp_path, s)
    zoo.download(K400.name, progress=False)
    assert cached(tmp_path, K400).read_bytes() == body and s.requests[1] == (where(K400), None, None)


def test_a_trickle_ends_at_the_stall_deadline_in_one_line_also_when_a_load_downloads(body, serve, user, tmp_path):
    s = serve({where(K400): Route(body, mode="trickle", interval=5.0)})
    start = time.monotonic()
    out = user(s, "convert", K400.name, "k400.safetensors", **{STALL_ENV: "0.5"})  # load_pretrained(NAME) inside
    assert time.monotonic() - start < 15
    assert (out.returncode, out.stderr.strip()) == (2, "timesformer-lite convert: error: " + (
        f"downloading {K400.name}: no byte from {s.url}/{where(K400)} for 0.5 s (the stall deadline, {STALL_ENV}); "
        f"run the same command again to resume, or raise {STALL_ENV}"
    ))  # fmt: skip
    assert not cached(tmp_path, K400).exists()


def test_a_trickle_faster_than_the_stall_deadline_ends_at_the_overall_deadline(body, serve, user, tmp_path):
    s = serve({where(K400): Route(body, mode="trickle", interval=0.1)})
    start = time.monotonic()
    out = user(s, "download", K400.name, "--timeout", "1.5", **{STALL_ENV: "5"})
    assert time.monotonic() - start < 15
    (line,) = out.stderr.strip().splitlines()
    assert (
        out.returncode == 2
        and line.startswith(f"{ERROR}downloading {K400.name} passed its overall deadline of 1.5 s ({TIMEOUT_ENV}) at ")
        and line.endswith(f" of {len(body)} bytes; run the same command again to resume, or raise {TIMEOUT_ENV}")
    )
    received = int(line.split(" at ")[1].split(" of ")[0])
    assert 3 <= received <= 40  # a byte every 0.1 s for 1.5 s (the process starts in between)
    assert not cached(tmp_path, K400).exists()


def test_deadlines_come_from_keywords_then_the_environment_then_the_defaults(monkeypatch):
    monkeypatch.delenv(STALL_ENV, raising=False)
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert Deadlines.resolve() == Deadlines(30.0, 3600.0)
    monkeypatch.setenv(STALL_ENV, "2.5")
    assert Deadlines.resolve() == Deadlines(2.5, 3600.0) and Deadlines.resolve(stall=7) == Deadlines(7.0, 3600.0)
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(WeightsError, match=f"^{TIMEOUT_ENV}='soon' is not a number of seconds; set it to e.g. 3600$"):
        Deadlines.resolve()
    with pytest.raises(WeightsError, match=r"^stall=0: a deadline is a number of seconds > 0 \(default 30\)$"):
        Deadlines.resolve(stall=0, total=1)


def test_the_keyword_deadline_ends_an_in_process_download(body, serve, tmp_path, monkeypatch):
    s = serve({where(K400): Route(body, mode="trickle", interval=5.0)})
    in_process(monkeypatch, tmp_path, s)
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"no byte from .* for 0.3 s \(the stall deadline"):
        zoo.download(K400.name, progress=False, stall=0.3)
    assert time.monotonic() - start < 5


def test_a_mirror_that_is_not_an_http_url_is_one_line(monkeypatch):
    monkeypatch.setenv(zoo.MIRROR_ENV, "/srv/zoo")
    with pytest.raises(
        WeightsError, match=rf"^{zoo.MIRROR_ENV}='/srv/zoo' is not an http\(s\) URL; set it to a server"
    ):
        zoo.download(K400.name)


def test_a_published_prefix_digest_is_accepted_and_a_wrong_one_deletes_the_file(body, serve, tmp_path):
    s = serve({"f.pyth": Route(body)})
    digest = hashlib.sha256(body).hexdigest()
    assert fetch(f"{s.url}/f.pyth", tmp_path / "a" / "f.pyth", digest[:8], progress=False).read_bytes() == body
    with pytest.raises(WeightsError, match=rf"has sha256 {digest}, not the published 0{{64}}; it was deleted"):
        fetch(f"{s.url}/f.pyth", tmp_path / "b" / "f.pyth", "0" * 64, progress=False)
    assert list((tmp_path / "b").iterdir()) == []


def test_a_download_shows_a_progress_bar_on_request(body, serve, tmp_path, monkeypatch, capsys):
    s = serve({where(K400): Route(body)})
    in_process(monkeypatch, tmp_path, s)
    zoo.download(K400.name, progress=True)
    err = capsys.readouterr().err
    kib = f"{len(body) / 1024:.3g}k"
    assert f"{K400.filename}: 100%" in err and f"{kib}/{kib}" in err  # tqdm's bar, complete


def test_processes_loading_the_same_name_at_once_download_it_once(body, serve, tmp_path, monkeypatch):
    s = serve({where(K400): Route(body)})
    in_process(monkeypatch, tmp_path, s)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(zoo.download(K400.name, progress=False))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 3 and all(p.read_bytes() == body for p in paths)
    assert s.requests == [(where(K400), None, None)]  # one transfer; the others waited for the lock, then verified it


def test_offline_is_one_clear_line_naming_the_url_and_the_fix(user, tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = user(None, "download", K400.name, **{zoo.MIRROR_ENV: f"http://127.0.0.1:{port}"})
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith(
        f"{ERROR}cannot download {K400.name}: http://127.0.0.1:{port}/{where(K400)} is unreachable"
    )
    assert "connect to the internet" in out.stderr and str(cached(tmp_path, K400)) in out.stderr


def test_download_dir_puts_the_file_there_and_prints_its_path(body, serve, tmp_path, monkeypatch, capsys):
    s = serve({where(K400): Route(body)})
    in_process(monkeypatch, tmp_path, s)
    assert cli(["download", K400.name, "--dir", str(tmp_path / "here"), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "here" / K400.filename)
    assert (tmp_path / "here" / K400.filename).read_bytes() == body and not (tmp_path / "cache").exists()


def test_a_read_only_cache_is_verified_without_a_lock_file(body, serve, tmp_path, monkeypatch):
    s = serve({where(K400): Route(body)})
    in_process(monkeypatch, tmp_path, s)
    path = zoo.download(K400.name, progress=False)
    path.with_name(K400.filename + ".lock").unlink()
    folder = path.parent
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == folder else real_access(p, mode))
    assert zoo.download(K400.name) == path  # patched, not chmod: to root every folder is writable
    assert sorted(p.name for p in folder.iterdir()) == [K400.filename, f"{K400.filename}.sha256"]
    assert len(s.requests) == 1
