"""`timesformer-lite` and `python -m timesformer_lite`: one entry point, one module per subcommand.

Each subcommand lives beside the code it drives and exposes `main(argv) -> int`; this file only
dispatches, so importing the CLI never imports the whole package. Errors a user can fix (a bad config,
file or checkpoint, a full disk, a folder that cannot be written, a diverged run) print as one line naming
the thing and the fix, and exit 2; Ctrl-C prints one line (for training: where to resume from) and exits 130.
Set TIMESFORMER_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

from .config import ConfigError

COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("timesformer_lite.utils", "a config's model: parameters, FLOPs, a forward pass"),
    "train": ("timesformer_lite.train.cli", "train (one process, or under torchrun for DDP)"),
    "test": ("timesformer_lite.train.evaluate", "the reference multi-view test protocol on a checkpoint"),
    "predict": ("timesformer_lite.predict", "top-k labels for your own videos"),
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"timesformer-lite: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.main(rest) or 0)
    except KeyboardInterrupt as e:  # the trainer's TrainingInterrupted says where to resume from
        if os.environ.get("TIMESFORMER_DEBUG"):
            raise
        print(f"timesformer-lite {name}: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        return 130
    except (ConfigError, ValueError, OSError, RuntimeError) as e:
        if os.environ.get("TIMESFORMER_DEBUG") or (isinstance(e, RuntimeError) and not _diverged(e)):
            raise  # any other RuntimeError is a bug to report, with its traceback
        print(f"timesformer-lite {name}: error: {describe(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
