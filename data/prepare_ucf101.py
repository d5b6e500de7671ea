"""Turn an extracted UCF101 into list files: `python data/prepare_ucf101.py data/ucf101 [--split 1]`.

Expects `ROOT/UCF-101/<Class>/v_*.avi` (from UCF101.rar) and `ROOT/ucfTrainTestlist/` (from
UCF101TrainTestSplits-RecognitionTask.zip). Writes `train.txt`, `val.txt`, `test.txt` and `classes.txt`
into `--out` (default ROOT). UCF101 has no validation split: `val.txt` is the split's test list, the
usual practice. Then train with `data.dataset=list data.root=ROOT` (or `dataset=ucf101`, which reads
the official lists directly).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from timesformer_lite.data.annotations import ucf101_split, write_lists


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder holding UCF-101/ and ucfTrainTestlist/")
    parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="official split")
    parser.add_argument("--out", type=Path, default=None, help="where to write the lists (default: root)")
    args = parser.parse_args(argv)
    train, classes = ucf101_split(args.root, args.split, "train")
    test, _ = ucf101_split(args.root, args.split, "test")
    print(
        "UCF101 split",
        args.split,
        write_lists(args.out or args.root, {"train": train, "val": test, "test": test}, classes, args.root),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
