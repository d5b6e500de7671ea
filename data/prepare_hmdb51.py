"""Turn an extracted HMDB51 into list files: `python data/prepare_hmdb51.py data/hmdb51 [--split 1]`.

Expects `ROOT/hmdb51_org/<class>/*.avi` (the per-class rars of hmdb51_org.rar, extracted) and
`ROOT/testTrainMulti_7030_splits/<class>_test_split<N>.txt` (test_train_splits.rar). In a split file, flag 1
is train, 2 is test, 0 is unused. Writes `train.txt`, `val.txt` (= test, HMDB51 has no validation split),
`test.txt` and `classes.txt` (51 classes, sorted) into `--out` (default ROOT).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from timesformer_lite.data.annotations import hmdb51_split, write_lists


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder holding hmdb51_org/ and testTrainMulti_7030_splits/")
    parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="official split")
    parser.add_argument("--out", type=Path, default=None, help="where to write the lists (default: root)")
    args = parser.parse_args(argv)
    train, classes = hmdb51_split(args.root, args.split, "train")
    test, _ = hmdb51_split(args.root, args.split, "test")
    print(
        "HMDB51 split",
        args.split,
        write_lists(args.out or args.root, {"train": train, "val": test, "test": test}, classes, args.root),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
