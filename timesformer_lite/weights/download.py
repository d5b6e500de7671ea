"""`timesformer-lite download NAME [--dir D]` and `timesformer-lite download --list`: the zoo from the command line.

timesformer-lite download --list                                  # every entry, and whether its file verifies
timesformer-lite download paddlevideo/timesformer-k400            # into ~/.cache/timesformer_lite (or $TIMESFORMER_LITE_CACHE)
timesformer-lite predict clip.mp4 --checkpoint paddlevideo/timesformer-k400 --explain out/
"""

from __future__ import annotations

import argparse
import os

from .fetch import DEFAULT_STALL, DEFAULT_TIMEOUT, STALL_ENV, TIMEOUT_ENV
from .zoo import CACHE_ENV, MIRROR_ENV, ZOO, cache_dir, cache_state, download, url_of


def listing() -> str:
    """One block per zoo entry: name and the state of its file, what it is, classes, accuracy, format, source."""
    lines = []
    for e in ZOO.values():
        state = cache_state(e)
        lines.append(f"{e.name}{f'  ({state})' if state else ''}")
        lines.append(f"    {e.about}")
        classes = e.classes or ("in the file" if e.shipped else "none (ImageNet init: new head)")
        details = [f"format {e.source}", f"classes {classes}"]
        lines.append(f"    {'; '.join(details)}" + (f"; {e.accuracy}" if e.accuracy else ""))
        lines.append(f"    {e.shipped or url_of(e)}")
    lines.append(f"cache: {cache_dir()} (set {CACHE_ENV} to move it)")
    if os.environ.get(MIRROR_ENV, "").strip():
        lines.append(f"mirror: {os.environ[MIRROR_ENV].strip()} ({MIRROR_ENV}: the URLs above are the mirror's)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="timesformer-lite download",
        description="Download a published checkpoint of the zoo (the name works wherever a checkpoint path does). "
        "Files are verified on every use; a cached file that fails is removed and downloaded again.",
    )
    parser.add_argument("name", nargs="?", help="a zoo name, e.g. paddlevideo/timesformer-k400 (see --list)")
    parser.add_argument("--dir", default=None, help=f"folder for the file (default: {cache_dir()}/NAME)")
    parser.add_argument("--list", action="store_true", help="list the zoo: names, classes, accuracy, URLs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--stall", type=float, default=None, metavar="S",
        help=f"seconds without a byte before giving up (default ${STALL_ENV}, else {DEFAULT_STALL:g})",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=None, metavar="S",
        help=f"seconds for the whole download (default ${TIMEOUT_ENV}, else {DEFAULT_TIMEOUT:g})",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    if not args.name:
        parser.error("give a NAME to download, or --list")
    progress = False if args.no_progress else None
    print(download(args.name, args.dir, progress=progress, stall=args.stall, timeout=args.timeout))
    return 0
