"""`timesformer-lite` and `python -m timesformer_lite`: one entry point, one module per subcommand.

Each subcommand lives beside the code it drives and exposes `main(argv) -> int`; this file only
dispatches, so importing the CLI never imports the whole package. Errors a user can fix print as one
line (set TIMESFORMER_DEBUG=1 for the traceback).
"""

from __future__ import annotations

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
    "export": ("timesformer_lite.export", "export to ONNX or TorchScript"),
    "bench": ("timesformer_lite.bench", "speed benchmarks against Hugging Face"),
}


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
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        if os.environ.get("TIMESFORMER_DEBUG"):
            raise
        print(f"timesformer-lite {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
