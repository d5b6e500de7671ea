"""Label files: reading the formats datasets ship with, writing PaddleVideo list files.

Every reader returns `(items, classes)` where `items` is a list of `(relative_path, label)` with paths
relative to the dataset root and labels 0-based into `classes`. Accepted formats:

- list (PaddleVideo): one `relative/path.mp4 label` per line; the label is the last field, so paths
  may hold spaces. `classes.txt` has one class name per line, in label order.
- csv: a `path,label` header (or none) then rows; the label is an integer or a class name.
- folder: `root/<split>/<class>/*.mp4` (classes sorted by name; `val` falls back to `test`).
- UCF101: `ucfTrainTestlist/classInd.txt` (`1 ApplyEyeMakeup`, 1-based), `trainlist0N.txt`
  (`Class/v_..avi 1`), `testlist0N.txt` (no label: taken from the folder, case-insensitively, because
  classInd says `HandstandPushups` where the folder says `HandStandPushups`). Videos under `UCF-101/`,
  `videos/` or the root itself.
- Kinetics: CSV with columns `label,youtube_id,time_start,time_end,split` (extra columns ignored); a
  clip is the file `{youtube_id}_{start:06d}_{end:06d}.<ext>` (or `{youtube_id}.<ext>`) anywhere under
  the split's video folder, flat or in label folders. Clips not found are counted, not fatal (K400
  loses videos to YouTube every year). Classes are the sorted labels.
- HMDB51: `testTrainMulti_7030_splits/<class>_test_split<N>.txt` with `name.avi 1|2|0` (1 train,
  2 test, 0 unused); videos in `<class>/` under `hmdb51_org/`, `videos/` or the root.

A malformed line raises `AnnotationError` naming the file, the line number and the fix.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")

Items = list[tuple[str, int]]


class AnnotationError(ValueError):
    """A label file is missing or malformed. The message names the file and line."""


def _text(path: Path) -> str:
    """The contents of a label file, which must exist and be UTF-8 (the error names the line that is not)."""
    if not path.is_file():
        raise AnnotationError(f"label file '{path}' does not exist; check data.root and the list names")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise AnnotationError(
            f"{path}:{line}: is not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8"
        ) from None


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped line) of every line that is neither blank nor a `#` comment."""
    lines = _text(path).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]


def read_classes(path: str | Path) -> list[str]:
    """Class names, one per line, in label order."""
    path = Path(path)
    names = [line for _, line in _lines(path)]
    seen: dict[str, int] = {}
    for n, name in enumerate(names, 1):
        if name in seen:
            raise AnnotationError(f"{path}: class {name!r} is listed twice (lines {seen[name]} and {n})")
        seen[name] = n
    if not names:
        raise AnnotationError(f"{path}: no class names; write one class name per line")
    return names


def write_classes(path: str | Path, classes: list[str]) -> None:
    Path(path).write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")


def write_list(path: str | Path, items: Items) -> None:
    """PaddleVideo list: `relative/path label` per line."""
    Path(path).write_text("".join(f"{p} {label}\n" for p, label in items), encoding="utf-8")


def _label(path: Path, n: int, raw: str, classes: list[str] | None) -> int:
    if raw.lstrip("-").isdigit():
        label = int(raw)
    elif classes is not None and raw in classes:
        return classes.index(raw)
    else:
        known = f"; known classes: {', '.join(classes[:5])}..." if classes else ""
        raise AnnotationError(f"{path}:{n}: label {raw!r} is not an integer or a class name{known}")
    if label < 0 or (classes is not None and label >= len(classes)):
        size = f"0..{len(classes) - 1} ({len(classes)} classes)" if classes else "0 or more"
        raise AnnotationError(f"{path}:{n}: label {label} is outside {size}; fix the line or the classes file")
    return label


def read_list(path: str | Path, classes: list[str] | None = None) -> Items:
    """A PaddleVideo list file: `relative/path label` per line (`#` comments and blank lines skipped).

    Args:
        path: the list file.
        classes: when given, labels are checked against it and may also be class names.
    """
    path = Path(path)
    items = []
    for n, line in _lines(path):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise AnnotationError(f"{path}:{n}: expected 'relative/path label', got {line!r}; add the label")
        items.append((parts[0], _label(path, n, parts[1], classes)))
    return items


def read_csv_list(path: str | Path, classes: list[str] | None = None) -> Items:
    """A CSV of `path,label` rows, with or without that header."""
    path = Path(path)
    reader = csv.reader(io.StringIO(_text(path), newline=""))
    rows = [(n, r) for n, r in enumerate(reader, 1) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["path", "label"]:
        rows = rows[1:]
    items = []
    for n, row in rows:
        if len(row) < 2:
            raise AnnotationError(f"{path}:{n}: expected 'path,label', got {','.join(row)!r}")
        items.append((row[0].strip(), _label(path, n, row[1].strip(), classes)))
    return items


def _videos_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


def scan_folder(root: str | Path, split: str, classes: list[str] | None = None) -> tuple[Items, list[str]]:
    """`root/<split>/<class>/**/*.mp4` (any video extension); `val` falls back to `test` when absent.

    Args:
        root: dataset root.
        split: "train", "val" or "test".
        classes: class order to use; default: sorted folder names of `root/train` (or of the split).
    """
    root = Path(root)
    folder = root / split
    if not folder.is_dir() and split == "val":
        folder = root / "test"
    if not folder.is_dir():
        raise AnnotationError(f"folder dataset: '{root / split}' does not exist; expected root/{split}/<class>/*.mp4")
    if classes is None:
        base = root / "train" if (root / "train").is_dir() else folder
        classes = sorted(d.name for d in base.iterdir() if d.is_dir())
    items = []
    for d in sorted(folder.iterdir()):
        if not d.is_dir():
            continue
        if d.name not in classes:
            raise AnnotationError(f"folder dataset: class folder '{d}' is not among the {len(classes)} train classes")
        items += [(str(p.relative_to(root)), classes.index(d.name)) for p in _videos_under(d)]
    return items, classes


def _video_dir(root: Path, candidates: tuple[str, ...], probe: str) -> Path:
    """The first of `root/<candidate>` that holds `probe` (a relative video path), else the first existing."""
    dirs = [root / c for c in candidates]
    for d in dirs:
        if (d / probe).exists():
            return d
    for d in dirs:
        if d.is_dir():
            return d
    return root


def ucf101_split(root: str | Path, split: int, which: str) -> tuple[Items, list[str]]:
    """UCF101 official split `split` (1-3), `which` = "train" or "test"; paths relative to `root`."""
    root = Path(root)
    lists = root / "ucfTrainTestlist"
    if not lists.is_dir():
        lists = root
    class_file = lists / "classInd.txt"
    classes = []
    for n, line in _lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise AnnotationError(f"{class_file}:{n}: expected '{len(classes) + 1} ClassName', got {line!r}")
        classes.append(parts[1])
    by_lower = {c.lower(): i for i, c in enumerate(classes)}
    path = lists / f"{which}list0{split}.txt"
    entries = _lines(path)
    video_dir = _video_dir(root, ("UCF-101", "UCF101", "videos", "."), entries[0][1].split()[0] if entries else "")
    items = []
    for n, line in entries:
        parts = line.split()
        folder = parts[0].split("/")[0].lower()
        if folder not in by_lower:
            raise AnnotationError(f"{path}:{n}: class folder {parts[0].split('/')[0]!r} is not in {class_file}")
        label = by_lower[folder]
        if len(parts) == 2:
            given = _label(path, n, parts[1], None) - 1  # trainlist labels are 1-based
            if given != label:
                raise AnnotationError(f"{path}:{n}: label {parts[1]} (1-based) disagrees with folder {folder!r}")
        elif len(parts) != 1:
            raise AnnotationError(f"{path}:{n}: expected 'Class/v_name.avi [label]', got {line!r}")
        items.append((str((video_dir / parts[0]).relative_to(root)), label))
    return items, classes


def hmdb51_split(root: str | Path, split: int, which: str) -> tuple[Items, list[str]]:
    """HMDB51 official split `split` (1-3), `which` = "train" (flag 1) or "test" (flag 2)."""
    root = Path(root)
    lists = root / "testTrainMulti_7030_splits"
    if not lists.is_dir():
        lists = root
    files = sorted(lists.glob(f"*_test_split{split}.txt"))
    if not files:
        raise AnnotationError(f"HMDB51: no '*_test_split{split}.txt' in '{lists}'; extract test_train_splits.rar there")
    classes = [f.name[: -len(f"_test_split{split}.txt")] for f in files]
    flag = {"train": "1", "test": "2"}[which]
    first = _lines(files[0])
    video_dir = _video_dir(
        root, ("hmdb51_org", "videos", "."), f"{classes[0]}/{first[0][1].split()[0]}" if first else ""
    )
    items = []
    for label, (cls, f) in enumerate(zip(classes, files)):
        for n, line in _lines(f):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise AnnotationError(f"{f}:{n}: expected 'name.avi 0|1|2', got {line!r}")
            if parts[1] == flag:
                items.append((str((video_dir / cls / parts[0]).relative_to(root)), label))
    return items, classes


def kinetics_annotations(path: str | Path) -> list[tuple[str, str]]:
    """`(label, clip_stem)` rows of a Kinetics CSV; clip_stem is `{youtube_id}_{start:06d}_{end:06d}`."""
    path = Path(path)
    with io.StringIO(_text(path), newline="") as f:
        reader = csv.DictReader(f)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if not need <= set(reader.fieldnames or []):
            raise AnnotationError(
                f"{path}:1: Kinetics CSV needs columns {', '.join(sorted(need))}, got {reader.fieldnames}"
            )
        rows = []
        for n, r in enumerate(reader, 2):
            try:
                start, end = int(float(r["time_start"])), int(float(r["time_end"]))
            except (TypeError, ValueError):
                raise AnnotationError(f"{path}:{n}: time_start/time_end must be numbers, got {r}") from None
            rows.append((r["label"].strip(), f"{r['youtube_id']}_{start:06d}_{end:06d}"))
    return rows


def kinetics_split(
    root: str | Path, csv_path: str | Path, video_dir: str | Path, classes: list[str] | None = None
) -> tuple[Items, list[str], list[str]]:
    """Match a Kinetics CSV to the clips on disk.

    Args:
        root: dataset root (returned paths are relative to it).
        csv_path: the annotation CSV.
        video_dir: the folder holding this split's clips (searched recursively once).
        classes: label order; default: sorted labels of this CSV.

    Returns:
        (items, classes, missing): missing lists the clip stems of CSV rows with no file.
    """
    root, video_dir = Path(root), Path(video_dir)
    rows = kinetics_annotations(csv_path)
    if classes is None:
        classes = sorted({label for label, _ in rows})
    index = {}
    if video_dir.is_dir():
        for dirpath, _, names in os.walk(video_dir):
            for name in names:
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTENSIONS:
                    index.setdefault(stem, os.path.relpath(os.path.join(dirpath, name), root))
    label_of = {c: i for i, c in enumerate(classes)}
    items, missing = [], []
    for n, (label, stem) in enumerate(rows, 2):
        if label not in label_of:
            raise AnnotationError(f"{csv_path}:{n}: label {label!r} is not among the {len(classes)} classes")
        rel = index.get(stem) or index.get(stem[: -len("_000000_000000")])
        if rel is None:
            missing.append(stem)
        else:
            items.append((rel, label_of[label]))
    return items, classes, missing


def write_lists(out: str | Path, splits: dict[str, Items], classes: list[str], root: str | Path | None = None) -> str:
    """Write `{split}.txt` list files and `classes.txt` into `out`; return a one-line summary.

    Args:
        out: destination folder (usually the dataset root, so list paths stay relative to it).
        splits: items per split name.
        classes: class names in label order.
        root: when given, items whose file is missing under it are left out and counted in the summary.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for name, items in splits.items():
        kept = [it for it in items if root is None or (Path(root) / it[0]).is_file()]
        write_list(out / f"{name}.txt", kept)
        missing = len(items) - len(kept)
        parts.append(f"{name} {len(kept)}" + (f" ({missing} missing files left out)" if missing else ""))
    write_classes(out / "classes.txt", classes)
    return f"{len(classes)} classes; " + ", ".join(parts) + f" -> {out}"
