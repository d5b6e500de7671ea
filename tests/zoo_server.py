"""A loopback HTTP server standing in for the zoo's hosts: `TIMESFORMER_LITE_ZOO_MIRROR=server.url` sends every
zoo download to it, as `<url>/<zoo name>/<file name>`.

Each path has a `Route`: the file's bytes and how they are served. "good" is a correct server (a strong ETag,
Range with If-Range, Content-Range); the others are the faults a download must survive or refuse: an HTML page,
a body cut short of its Content-Length, a 206 at the wrong offset, a 200 to a ranged request, and a trickle of one
byte every `interval` seconds. `cut_first` cuts only the first answer short (a broken connection, then a correct
server). The server answers at most `max_requests` requests (then 503) and shuts itself down after `lifetime`
seconds, so no test can hang on it; `requests` logs (path, Range, If-Range) of every request.
"""

from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from process_fixtures import cli_command

import timesformer_lite as tl

ROOT = Path(__file__).resolve().parents[1]
ETAG = '"v1"'
MODES = ("good", "html", "short", "wrong-range", "ignore-range", "trickle")


@dataclass
class Route:
    """How one file is served.

    Args:
        body: the file's bytes.
        mode: one of `MODES`.
        cut_first: the first answer stops half-way and closes the connection (then `mode` applies).
        etag: the strong ETag sent with every answer; None sends none (the download cannot resume).
        interval: seconds between the bytes of a trickle.
    """

    body: bytes
    mode: str = "good"
    cut_first: bool = False
    etag: str | None = ETAG
    interval: float = 2.0

    def __post_init__(self) -> None:
        assert self.mode in MODES, self.mode


class ZooServer:
    """Serves `routes` (URL path without the leading slash -> `Route`) on 127.0.0.1 until `close()`."""

    def __init__(self, routes: dict[str, Route], max_requests: int = 12, lifetime: float = 90.0) -> None:
        self.routes, self.max_requests = routes, max_requests
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.stop = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.timer = threading.Timer(lifetime, self.close)
        self.timer.daemon = True
        self.timer.start()

    def close(self) -> None:
        self.stop.set()
        self.timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range"), self.headers.get("If-Range")))
                route = server.routes.get(name)
                if len(server.requests) > server.max_requests or route is None:
                    self.send_error(503 if route else 404)
                    return
                server._answer(self, route)

        return Handler

    def _answer(self, h: BaseHTTPRequestHandler, route: Route) -> None:
        data, rng = route.body, h.headers.get("Range")
        if route.mode == "html":
            page = b"<!DOCTYPE html><html><body>Please sign in to continue</body></html>"
            self._send(h, 200, page, {"Content-Type": "text/html"})
            return
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        fresh = h.headers.get("If-Range") not in (None, route.etag)  # If-Range names another version: send it all
        ranged = rng is not None and not fresh and route.mode != "ignore-range"
        if not ranged:
            start = 0
        offset = start + 7 if ranged and route.mode == "wrong-range" else start  # bytes from elsewhere in the file
        headers = {"ETag": route.etag} if route.etag else {}
        if ranged:
            headers["Content-Range"] = f"bytes {offset}-{len(data) - 1}/{len(data)}"
        body = data[offset:]
        if route.cut_first or route.mode == "short":
            route.cut_first = False
            self._send(h, 206 if ranged else 200, body[: len(body) // 2], headers, length=len(body))
            h.close_connection = True
            return
        self._send(h, 206 if ranged else 200, body, headers, trickle=route.interval if route.mode == "trickle" else 0)

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str], length: int = -1,
              trickle: float = 0) -> None:  # fmt: skip
        h.send_response(status)
        h.send_header("Content-Length", str(length if length >= 0 else len(body)))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        if not trickle:
            h.wfile.write(body)
            return
        for i in range(len(body)):  # one byte, then a pause, until the client gives up or the server stops
            if self.stop.wait(trickle):
                return
            try:
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
            except OSError:
                return


def run_cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m timesformer_lite ARGS` as a user runs it: its own process, environment and folder."""
    env = {**env, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cli_command(*args), capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def official_file(folder: Path, num_classes: int, name: str = "tiny_K400.pyth") -> tuple[Path, tl.TimeSformer]:
    """A tiny model saved as the official release does: `model_state` with every key prefixed `model.`."""
    torch.manual_seed(0)
    cfg = tl.ModelConfig(img_size=32, patch_size=16, num_frames=2, embed_dim=24, depth=1, num_heads=12,
                         num_classes=num_classes, drop_path_rate=0.0)  # fmt: skip
    model = tl.TimeSformer(cfg).eval()
    path = folder / name
    torch.save({"model_state": {f"model.{k}": v for k, v in model.state_dict().items()}}, path)
    return path, model
