"""Issue 24, item 6: memory does not grow with frame size. `predict` on an 8000 x 8000 clip peaked at 7.8 GB
(a float copy of every sampled frame at full size); the decoder now scales frames above 4K down, and the
transforms make a clip float a few frames at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
from safety_fixtures import ROOT

from timesformer_lite.assets import toy_model_path

GB = 10**9


def write_huge_clip(path, side: int = 8000):
    """One MJPEG frame of side x side (a bar on black; 2 s to write): the model's 8 frames all sample it."""
    frame = np.zeros((side, side, 3), np.uint8)
    frame[:, side // 3 : side // 2] = (255, 200, 0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=Fraction(8))
        stream.width = stream.height = side
        stream.pix_fmt = "yuvj420p"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


# `python -m timesformer_lite ARGS` that reports its peak resident memory (VmHWM) on stderr at exit. Not the
# rusage of the child: Linux carries the parent's high-water mark across fork and exec into ru_maxrss, and the
# test process holds far more than the command should.
MEASURED = """
import atexit, runpy, sys

def peak():
    with open("/proc/self/status") as f:
        print("peak kB", next(line for line in f if line.startswith("VmHWM:")).split()[1], file=sys.stderr)

atexit.register(peak)
sys.argv = ["timesformer-lite", *sys.argv[1:]]
runpy.run_module("timesformer_lite", run_name="__main__", alter_sys=True)
"""


def peak_rss(args: list[str], timeout: float = 300) -> tuple[int, int, str]:
    """Run the CLI with `args`: (exit code, its peak resident memory in bytes, its stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", MEASURED, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    peak = [int(line.split()[-1]) * 1024 for line in done.stderr.splitlines() if line.startswith("peak kB")]
    assert len(peak) == 1, done.stderr[-2000:]
    return done.returncode, peak[0], done.stderr


def test_predict_on_an_8000x8000_clip_peaks_under_1_gb(tmp_path):
    clip = write_huge_clip(tmp_path / "huge.avi")
    code, peak, stderr = peak_rss(["predict", str(clip), "--checkpoint", str(toy_model_path()), "--json"])
    assert code == 0, stderr[-2000:]
    assert peak <= 1 * GB, f"peak RSS {peak / 2**20:.0f} MiB"  # 7.8 GB before (2026-12-06, this clip)
