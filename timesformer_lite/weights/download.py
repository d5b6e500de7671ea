"""`timesformer-lite download NAME [--dir D]` and `timesformer-lite download --list`: the zoo from the command line.

timesformer-lite download --list
timesformer-lite download paddlevideo/timesformer-k400            # into ~/.cache/timesformer_lite (or $TIMESFORMER_LITE_CACHE)
timesformer-lite predict clip.mp4 --checkpoint paddlevideo/timesformer-k400 --explain out/
"""

from __future__ import annotations

import argparse

from .zoo import CACHE_ENV, ZOO, cache_dir, download


def listing() -> str:
    """One block per zoo entry: name, what it is, classes, accuracy, format and the file's URL."""
    lines = []
    for e in ZOO.values():
        here = (cache_dir() / e.name / e.filename).is_file()
        lines.append(f"{e.name}{'  (downloaded)' if here else ''}")
        lines.append(f"    {e.about}")
        details = [f"format {e.source}", f"classes {e.classes or 'none (ImageNet init: new head)'}"]
        lines.append(f"    {'; '.join(details)}" + (f"; {e.accuracy}" if e.accuracy else ""))
        lines.append(f"    {e.url}")
    lines.append(f"cache: {cache_dir()} (set {CACHE_ENV} to move it)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="timesformer-lite download",
        description="Download a published checkpoint of the zoo (the name works wherever a checkpoint path does).",
    )
    parser.add_argument("name", nargs="?", help="a zoo name, e.g. paddlevideo/timesformer-k400 (see --list)")
    parser.add_argument("--dir", default=None, help=f"folder for the file (default: {cache_dir()}/NAME)")
    parser.add_argument("--list", action="store_true", help="list the zoo: names, classes, accuracy, URLs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.list:
        print(listing())
        return 0
    if not args.name:
        parser.error("give a NAME to download, or --list")
    path = download(args.name, args.dir, progress=False if args.no_progress else None)
    print(path)
    return 0
