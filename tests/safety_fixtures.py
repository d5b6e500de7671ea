"""Helpers for the tests/test_safety_*.py modules: tiny models, their files in every format, the real CLI.

`outcome(fn)` runs `fn` in a forked child and reports how it ended (a value, a clean error, or anything
else), how long it took and how much the child's peak memory grew, so a loader that allocates gigabytes
or hangs on a bad file shows up as a number instead of taking the test process down with it.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from process_fixtures import cli_command, user_env

ROOT = Path(__file__).resolve().parents[1]
# the tiny far-from-init model and its PaddleVideo / PaddleClas state dict, as the paddle format tests make them
from test_weights_paddle import TINY, paddle_state  # noqa: E402, F401
from test_weights_paddle import source_model as tiny_model  # noqa: E402, F401


def write_pdparams(path: Path, state: dict, protocol: int = 4) -> Path:
    with open(path, "wb") as f:
        pickle.dump(state, f, protocol=protocol)
    return path


def cli(*args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess:
    """`python -m timesformer_lite ARGS` as a user runs it (no debug tracebacks)."""
    return subprocess.run(
        cli_command(*args), capture_output=True, text=True, timeout=timeout, cwd=kw.pop("cwd", ROOT), env=user_env(),
        **kw,
    )  # fmt: skip


def one_line_error(stderr: str) -> str:
    """The single line a failing command printed (warnings from libraries aside); fails on a traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if "timesformer-lite" in line]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def outcome(fn: Callable[[], Any], timeout: float = 30.0) -> dict[str, Any]:
    """Run `fn()` in a forked child: {"kind": "ok" | "error" | "crash" | "hang", "message", "type",
    "seconds", "grew": peak memory growth in bytes}. "error" is a clean one: a ValueError (WeightsError,
    ConfigError, ...) or an OSError; anything else is a "crash"."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery beyond this point, leave with os._exit
        os.close(read)
        torch.set_num_threads(1)
        with open(f"/proc/{os.getpid()}/statm") as f:
            start_rss = int(f.read().split()[1]) * resource.getpagesize() // 1024
        tic = time.perf_counter()
        try:
            fn()
            result = {"kind": "ok", "message": "", "type": ""}
        except (ValueError, OSError) as e:
            result = {"kind": "error", "message": str(e), "type": type(e).__name__}
        except BaseException as e:  # noqa: BLE001 (what the test is looking for)
            result = {"kind": "crash", "message": repr(e)[:2000], "type": type(e).__name__}
        result["seconds"] = time.perf_counter() - tic
        result["grew"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_rss) * 1024
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)
        return {"kind": "hang", "message": f"no answer in {timeout} s", "type": "", "seconds": timeout, "grew": 0}
    with os.fdopen(read, "rb") as f:
        data = f.read()
    if not data:
        return {"kind": "crash", "message": "the child died without a word", "type": "", "seconds": 0, "grew": 0}
    return json.loads(data)


def toy_clip(path: Path, frames: int = 4, size: int = 32, label: int = 0) -> Path:
    """One toy-motions mp4."""
    from timesformer_lite.data.toy import clip_rng, make_clip, write_mp4

    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, make_clip(label, clip_rng(0, "test", label, 0), frames, size))
    return path


SMOKE_PER_CLASS = 2  # 20 training clips: two optimizer steps an epoch


def smoke_data(root: Path) -> Path:
    """The smoke preset's toy data in `root`, at `SMOKE_PER_CLASS` clips per class (see `smoke_args`)."""
    from timesformer_lite.data.toy import ensure_toy_data

    ensure_toy_data(root, per_class=SMOKE_PER_CLASS, frames=8, size=32, seed=0)
    return root


def smoke_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`--config smoke` with the data of `smoke_data` and runs under `out`."""
    return [
        "--config",
        "smoke",
        f"data.root={data}",
        f"data.toy_per_class={SMOKE_PER_CLASS}",
        f"train.out_dir={out}",
        *extra,
    ]
