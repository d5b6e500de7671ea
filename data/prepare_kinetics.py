"""Turn downloaded Kinetics clips into list files: `python data/prepare_kinetics.py data/k400`.

Expects the layout of the CVDF download script (github.com/cvdfoundation/kinetics-dataset):
`ROOT/annotations/{train,val,test}.csv` (columns `label,youtube_id,time_start,time_end,split`; `validate.csv`
is accepted for val) and the clips under `ROOT/{train,val,test}/`, named
`{youtube_id}_{time_start:06d}_{time_end:06d}.mp4` (or `{youtube_id}.mp4`), flat or in per-label folders.
Writes `train.txt`, `val.txt`, `test.txt` and `classes.txt` (labels sorted: 400 for K400) into `--out`
(default ROOT). CSV rows without a clip on disk are counted and left out: K400 loses a few percent of
its videos to YouTube. Without `test.csv` (or its clips), `test.txt` is the validation list, on which
published K400 numbers are measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from timesformer_lite.data.annotations import AnnotationError, kinetics_annotations, kinetics_split, write_lists


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder holding annotations/ and the clip folders")
    parser.add_argument("--out", type=Path, default=None, help="where to write the lists (default: root)")
    args = parser.parse_args(argv)
    ann = args.root / "annotations"

    def find(*names: str) -> Path | None:
        return next((ann / n for n in names if (ann / n).is_file()), None)

    train_csv, val_csv, test_csv = find("train.csv"), find("val.csv", "validate.csv"), find("test.csv")
    if train_csv is None or val_csv is None:
        raise AnnotationError(f"Kinetics: need {ann}/train.csv and {ann}/val.csv (or validate.csv)")
    classes = sorted({label for label, _ in kinetics_annotations(train_csv)})
    splits, missing = {}, {}
    for name, csv_path, folders in (
        ("train", train_csv, ("train",)),
        ("val", val_csv, ("val", "validate")),
        ("test", test_csv, ("test",)),
    ):
        if csv_path is None:
            continue
        video_dir = next((args.root / f for f in folders if (args.root / f).is_dir()), args.root / folders[0])
        items, _, gone = kinetics_split(args.root, csv_path, video_dir, classes)
        splits[name], missing[name] = items, len(gone)
    if not splits.get("test"):
        splits["test"] = splits["val"]
    print("Kinetics", write_lists(args.out or args.root, splits, classes))
    lost = ", ".join(f"{k} {v}" for k, v in missing.items() if v)
    if lost:
        print(f"clips listed in the CSVs but not on disk (left out): {lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
