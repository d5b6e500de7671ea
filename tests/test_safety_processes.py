"""Issue 16, defect 2: the `data.cache` preload pool dies with its parent (kill -9, OOM killer)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from safety_fixtures import ROOT, alive, children, smoke_args

from timesformer_lite.data.toy import ensure_toy_data


def test_preload_workers_do_not_outlive_a_killed_training(tmp_path):
    data = tmp_path / "data"
    ensure_toy_data(data, per_class=8, frames=8, size=32, seed=0)  # 80 clips: more than a pool's chunk
    args = smoke_args(data, tmp_path / "runs", "data.toy_per_class=8", "data.cache=true")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "timesformer_lite", "train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not workers:
            workers = children(proc.pid)  # num_workers=0: the only children are the preload pool's
            time.sleep(0.005)
        assert workers, "the run ended before its preload pool was seen"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(pid) for pid in workers):
            time.sleep(0.05)
        survivors = [pid for pid in workers if alive(pid)]
        assert not survivors, f"pool workers {survivors} outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:  # only the workers this test's run made
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
