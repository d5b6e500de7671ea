"""Child processes for the tests that send real signals: started as a terminal starts them, ended whatever happens.

A test suite run as a script's background job inherits SIGINT ignored, and so would every child it starts: a
Ctrl-C test would then see its Ctrl-C ignored, and leave a training running. `started` gives the child SIGINT at
its default, puts it in a process group of its own, and kills that group (the child and whatever it started:
loader workers, torchrun's ranks) when the test leaves the block, passed, failed or interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# `python -m timesformer_lite ARGS`, run by runpy as -m runs it, after SETUP (Python source) ran in the process
AFTER = """
import runpy, sys
{setup}
sys.argv = ["timesformer_lite", *sys.argv[1:]]
runpy.run_module("timesformer_lite", run_name="__main__", alter_sys=True)
"""


def cli_command(*args: str, setup: str = "") -> list[str]:
    """The command line of the real CLI, `python -m timesformer_lite ARGS`, or, with `setup`, of the same run
    after `setup` has run in the same process (a slow exit handler, an import hook)."""
    if not setup:
        return [sys.executable, "-m", "timesformer_lite", *args]
    return [sys.executable, "-c", AFTER.format(setup=setup), *args]


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment as a user's shell has it: no debug tracebacks, one thread per process."""
    env = {k: v for k, v in os.environ.items() if k not in ("TIMESFORMER_DEBUG", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # in the child, before it runs


class Lines:
    """The lines of a child's text stream, read by a thread, so that a test can wait for one without blocking."""

    def __init__(self, stream) -> None:
        self.stream, self.lines = stream, []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> str:
        """The first line that contains `text`; fails after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if text in line]
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError(f"no line with {text!r} in {timeout} s; got:\n{''.join(self.lines)[-3000:]}")

    def text(self) -> str:
        """Everything, once the stream has ended (the child exited)."""
        self._thread.join()
        return "".join(self.lines)


class Child:
    """A running child: `proc` (a Popen), and the lines of its stdout (`out`) and stderr (`err`)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.out, self.err = proc, Lines(proc.stdout), Lines(proc.stderr)

    def finish(self, timeout: float) -> tuple[int, str, str]:
        """Wait for the child to exit: its return code, stdout and stderr."""
        code = self.proc.wait(timeout)
        return code, self.out.text(), self.err.text()


@contextlib.contextmanager
def started(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[Child]:
    """`cmd` running with SIGINT at its default, in a process group of its own, until the block ends; then the
    group is killed, the child reaped and its pipes closed."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=user_env() if env is None else env,
        preexec_fn=_as_from_a_terminal,
        start_new_session=True,
    )
    child = Child(proc)
    try:
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the child's own group (start_new_session): it and its children
        proc.wait()
        for lines in (child.out, child.err):
            lines.text()  # the pipe is at its end once the group is gone
            lines.stream.close()


def wait_until(condition, timeout: float, what: str) -> None:
    """Poll `condition()` every 20 ms; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)
