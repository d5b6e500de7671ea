"""The scripts of benchmarks/ (not part of the package), imported by their own names.

One import per script and process: a worker function that `--jobs 2` pickles by name must be the very object its
module holds, so every test (and `docs/book/make_book.py`) shares the module `import` made rather than loading the
file again.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def bench_module(name: str):
    """benchmarks/<name>.py as the module `import name` gives (benchmarks/ is put on the path once)."""
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    return importlib.import_module(name)
