"""Many processes from a notebook or script: `torchrun` on the package's own module, output streamed live.

A notebook never spawns its own code with multiprocessing (that breaks on spawn-based platforms and loses
the output); it launches `python -m torch.distributed.run ... -m timesformer_lite train` and reads the run
folder afterwards, exactly as a shell user would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..config import Config, load_config


def torchrun_command(config: str | Path, overrides: list[str], nproc: int, nnodes: int = 1) -> list[str]:
    """The command line `launch` runs (printable, copyable to a shell)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    cmd += ["--standalone"] if nnodes == 1 else [f"--nnodes={nnodes}"]
    return [*cmd, "-m", "timesformer_lite", "train", "--config", str(config), *overrides]


def launch(config: str | Path, overrides: list[str] | None = None, nproc: int = 2, echo=print) -> dict:
    """Train under torchrun with `nproc` processes on this machine; stream every output line through `echo`.

    Returns the run's summary.json as a dict. Raises `RuntimeError` with the last lines of output if the
    run fails.
    """
    overrides = list(overrides or [])
    cfg: Config = load_config(config, overrides)
    cmd = torchrun_command(config, overrides, nproc)
    echo("$ " + " ".join(cmd))
    tail: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            echo(line.rstrip("\n"))
            tail = (tail + [line])[-30:]
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with {proc.returncode}; last output:\n{''.join(tail)}")
    return json.loads((Path(cfg.train.out_dir) / cfg.train.name / "summary.json").read_text())
