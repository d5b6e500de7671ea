"""`timesformer-lite predict`: top-k labels for video files and folders of videos, from any checkpoint.

    timesformer-lite predict clip.mp4 my_videos/ --checkpoint best.pt [--top-k 5] [--json]
                     [--views 1x3] [--average logits|softmax] [--explain out/] [--device auto]

The protocol, the averaging and the explanations are `tl.predict`'s (predict.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data.decode import VideoReadError
from .predict import AVERAGES, find_videos, inference_config, load_model, parse_views, predict_each
from .predict_format import as_json, as_table


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command's arguments; `--top-k` below 1 is an error naming it."""
    p = argparse.ArgumentParser(prog="timesformer-lite predict", description=__doc__.split("\n")[0])
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files and/or folders of videos")
    p.add_argument("--checkpoint", required=True, help="any checkpoint `load_pretrained` reads")
    p.add_argument("--top-k", type=int, default=5, help="labels per video (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("--views", default=None, help="CLIPSxCROPS, e.g. 1x1, 1x3, 2x3 (default: the checkpoint's)")
    p.add_argument("--average", choices=AVERAGES, default="logits", help="how views combine (default logits)")
    p.add_argument("--explain", default=None, metavar="OUT", help="write an attention-rollout PNG + GIF per video")
    p.add_argument("--device", default="auto", help="auto (a GPU if any), cpu, cuda, cuda:N")
    args = p.parse_args(argv)
    if args.top_k < 1:
        p.error(f"--top-k {args.top_k}: must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """`timesformer-lite predict`: 0 when every named file and at least one video were predicted, else 1.

    Unreadable files named on the command line are errors; unreadable files inside a folder are skipped
    and counted. Every problem is one line on stderr naming the file, the cause and the fix.
    """
    args = parse_args(sys.argv[1:] if argv is None else argv)
    named, in_folders, failed = [], set(), 0
    for arg in map(Path, args.videos):
        if not arg.exists():
            print(
                f"timesformer-lite predict: error: '{arg}' does not exist; pass a video file or a folder",
                file=sys.stderr,
            )
            failed += 1
        elif arg.is_dir():
            found = find_videos(arg)
            if not found:
                print(f"timesformer-lite predict: error: folder '{arg}' has no video files", file=sys.stderr)
                failed += 1
            named += found
            in_folders.update(found)
        else:
            named.append(arg)
    if args.views is not None:
        parse_views(args.views)  # a bad --views fails before the checkpoint is loaded
    model = load_model(args.checkpoint, args.device, setting="--device {}")
    cfg = inference_config(model, args.views)
    done, skipped = 0, 0
    for path, result in predict_each(named, model, cfg, args.top_k, args.average, args.explain):
        if isinstance(result, VideoReadError):
            if path in in_folders:
                skipped += 1
                print(f"timesformer-lite predict: skipped: {result}", file=sys.stderr)
            else:
                failed += 1
                print(f"timesformer-lite predict: error: {result}", file=sys.stderr)
            continue
        done += 1
        print(as_json(result, args.average) if args.json else as_table(result, args.average), flush=True)
    if skipped:
        print(f"timesformer-lite predict: {done} predicted, {skipped} unreadable skipped", file=sys.stderr)
    return 0 if done and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
