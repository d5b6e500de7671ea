"""`timesformer-lite` and `python -m timesformer_lite`: one entry point, one module per subcommand.

Each subcommand lives beside the code it drives and exposes `main(argv) -> int`; this file only
dispatches, and imports nothing but the standard library (the package's `__init__` imports its names on first
use), so `--help` answers in a fraction of a second and only the chosen command loads torch. Errors a user can
fix (a bad config, file or checkpoint, a full disk, a folder that cannot be written, a diverged run) print as
one line naming the thing and the fix, and exit 2. Ctrl-C prints one line (for training: where to resume from)
and exits 130, also while the command's modules are still loading; a second Ctrl-C while the process exits
ends it at once. Set TIMESFORMER_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("timesformer_lite.info", "a config's model: parameters, FLOPs, a forward pass"),
    "train": ("timesformer_lite.train.cli", "train (one process, or under torchrun for DDP)"),
    "test": ("timesformer_lite.train.protocol", "the reference multi-view test protocol on a checkpoint"),
    "predict": ("timesformer_lite.predict_cli", "top-k labels for your own videos"),
    "toy-data": ("timesformer_lite.data.toy", "generate the toy-motions dataset"),
    "convert": ("timesformer_lite.weights.convert", "convert checkpoints between formats"),
    "download": ("timesformer_lite.weights.download", "download published checkpoints by name (--list)"),
    "export": ("timesformer_lite.export", "export to ONNX or TorchScript"),
}


# what to do about an OSError, by errno; the error itself names the file
_OS_FIXES = {
    errno.ENOSPC: "free space on that disk, or write somewhere else (e.g. train.out_dir=... or --out ...)",
    errno.EDQUOT: "free space within your quota, or write somewhere else",
    errno.EACCES: "check its permissions, or use a folder you can write",
    errno.EPERM: "check its permissions, or use a folder you can write",
    errno.EROFS: "that file system is read-only: write somewhere else",
    errno.ENOTDIR: "a file stands where a folder is needed: move it or choose another path",
    errno.EEXIST: "a file stands where a folder is needed: move it or choose another path",
    errno.EISDIR: "that is a folder: give a file",
}


def describe(e: BaseException) -> str:
    """The one line printed for an error a user can fix."""
    if isinstance(e, OSError) and e.strerror:
        where = f" '{e.filename}'" if e.filename else ""
        fix = _OS_FIXES.get(e.errno)
        return f"{e.strerror}{where}" + (f"; {fix}" if fix else "")
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _diverged(e: BaseException) -> bool:
    """A `TrainingDiverged` (its message says what to change), without importing the trainer to ask."""
    trainer = sys.modules.get("timesformer_lite.train.trainer")
    return trainer is not None and isinstance(e, trainer.TrainingDiverged)


def usage() -> str:
    lines = ["usage: timesformer-lite COMMAND [ARGS...]   (COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


@contextlib.contextmanager
def _exit_on_ctrl_c(name: str) -> Iterator[None]:
    """A Ctrl-C inside the block ends the process at once: one line, exit 130.

    For the imports of a command (torch takes seconds): a KeyboardInterrupt raised inside them came out as a
    traceback from deep in torch, or was swallowed by a library half-way through its import and resurfaced as
    an unrelated error ("module 'numpy' has no attribute ...").
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield  # no handler can be set here, or Ctrl-C is ignored anyway (a script's background job)
        return

    def leave(signum: int, frame: object) -> None:
        os.write(2, f"timesformer-lite {name}: interrupted\n".encode())  # unbuffered: safe inside a handler
        os._exit(130)

    previous = signal.signal(signal.SIGINT, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    """Run `timesformer-lite ARGV`; the exit status. `argv=None` reads `sys.argv` and acts as the program: only
    then does it change how the process handles Ctrl-C (see the module docstring)."""
    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"timesformer-lite: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        with _exit_on_ctrl_c(name) if program else contextlib.nullcontext():
            module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except KeyboardInterrupt as e:  # the trainer's TrainingInterrupted says where to resume from
        if os.environ.get("TIMESFORMER_DEBUG"):
            raise
        print(f"timesformer-lite {name}: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        if program:  # the command is over: a second Ctrl-C during the exit handlers (torch's take a while) ends
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the process by the signal, not with their traceback
        return 130
    except (ValueError, OSError, RuntimeError) as e:  # a ConfigError is a ValueError
        if os.environ.get("TIMESFORMER_DEBUG") or (isinstance(e, RuntimeError) and not _diverged(e)):
            raise  # any other RuntimeError is a bug to report, with its traceback
        print(f"timesformer-lite {name}: error: {describe(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
