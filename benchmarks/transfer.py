"""From images to video in miniature: does image pretraining help a TimeSformer, as the paper's §4.2 says?

    python benchmarks/transfer.py --out runs/transfer [--record] [--preset toy|smoke] [--seeds N] [--jobs N]

Bertasius et al. (2021, §4.2) train TimeSformer on K400 from scratch (64.8 % top-1) and from an ImageNet ViT
(75.8 % from ImageNet-1K, 78.0 % from ImageNet-21K). The same experiment on a laptop:
1. pretrain a ViT of the preset's width and depth on an image task made of still toy frames (shape x the quarter
   of the frame it sits in, `timesformer_lite.data.toy_stills`; nothing in a still moves, so it is not the
   video task), and save it as a timm ViT;
2. fine-tune it on toy motions with `model.pretrained=` that file: the loader inflates it through the same path
   as an ImageNet ViT (`weights.vit.inflate`: the space attention is the ViT's, the temporal attention starts as
   an identity, the time embedding at zero), on a share of the training clips (FRACTIONS: the first clips of
   every class) and on all of them;
3. train the same model from scratch on the same clips with the same recipe and budget (BUDGET: the epochs of
   each share, the same for both inits).

Every model is chosen on the validation split (best.pt) and the test split is read once per run, at its end.
The small share is trained with several seeds (the spread decides whether a gain is real). It prints the
table and writes OUT/transfer.json: one row per (init, train_fraction) with `test_top1`, `within_pair` (the
true class beats its time-reversed partner: order), `pair_top1` (the prediction is in the right pair, either
direction: what frames show), `val_top1` (means over seeds, `*_std`, the per-seed values), `train_seconds` and,
for image rows, `pretrain_seconds`. `--record` also appends a dated section to benchmarks/RESULTS.md and copies
the JSON to benchmarks/transfer.json, the record notebook 10 and the README read.
Targets (issue 21): the whole run <= 15 minutes on 2 CPU cores; at the smallest share the image-initialised
model beats scratch by >= 5 points of test top-1.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import torch

import timesformer_lite as tl
from timesformer_lite.data import TOY_CLASSES, read_list, write_list
from timesformer_lite.data.toy import ensure_toy_data_for
from timesformer_lite.train import run
from timesformer_lite.train.metrics import pair_partners
from timesformer_lite.train.pretrain import pretrain_vit

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `jobs` and `results` beside this file; job processes find this module as `transfer`
    sys.path.append(str(HERE))
from jobs import check_jobs, run_all  # noqa: E402
from results import append_results  # noqa: E402

RECORD = HERE / "transfer.json"
SECTION = "## From images to video (benchmarks/transfer.py)"
FRACTIONS = (0.1, 1.0)
# On top of the preset, for every video run: `make run`'s recipe with scale jitter, as Table 1 recorded it on
# 2026-12-02 (each training clip's short side resized to 32-40 px before its 32 px crop).
RECIPES = {"toy": ["data.train_scale=[32, 40]"], "smoke": []}
# The epochs of each share, the same for both inits, chosen on validation (seed 0, 2026-12-06). toy: the preset's
# 14 at 100 % (4,368 steps). At 10 %, 14 epochs (434 steps) end before either model learns any order: both near
# 50 % val within pairs (image init 49.0 %, 40.6 % val top-1; scratch 53.4 %, 43.6 %). With 40 (1,240 steps) both
# learn order, image init first: 80.8 % val top-1 (87.0 % within pairs) against 65.6 % (72.8 %).
BUDGET = {"toy": {0.1: ["train.epochs=40"], 1.0: []}, "smoke": {0.1: [], 1.0: []}}
# The image pretraining: stills per class, and its own overrides (epochs chosen on the stills' validation split).
PRETRAIN = {"toy": (500, ["train.epochs=10"]), "smoke": (8, ["train.epochs=2"])}
PAPER = {"scratch": 64.8, "ImageNet-1K": 75.8, "ImageNet-21K": 78.0}  # K400 top-1 %, Bertasius et al. 2021, §4.2


def train_subset(root: Path, fraction: float, out: Path) -> Path:
    """A list of the first `fraction` of every class's training clips (the same clips for every init and seed)."""
    by_class: dict[int, list[tuple[str, int]]] = {}
    for item in read_list(root / "train.txt"):
        by_class.setdefault(item[1], []).append(item)
    keep = [
        it for label in sorted(by_class) for it in by_class[label][: max(1, round(len(by_class[label]) * fraction))]
    ]
    path = out / f"train_{fraction:g}.txt"
    write_list(path, keep)
    return path.resolve()


def pair_top1(run_dir: Path) -> float:
    """Share of the run's test clips predicted in their own pair, either direction: what its frames tell apart,
    order aside (read from the test report the run wrote; pairs as `pair_partners` makes them)."""
    with open(run_dir / "test" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    index, partners = {name: i for i, name in enumerate(TOY_CLASSES)}, pair_partners(len(TOY_CLASSES)).tolist()
    return sum(index[r["prediction"]] in (index[r["label"]], partners[index[r["label"]]]) for r in rows) / len(rows)


def run_name(init: str, fraction: float, seed: int) -> str:
    """The run folder (and log) of one video run."""
    return f"{init}_{fraction:g}_seed{seed}"


def video_run(out: Path, preset: str, overrides: list[str], init: str, fraction: float, subset: Path, seed: int,
              vit: Path) -> dict:  # fmt: skip
    """Fine-tune (or train from scratch) one (init, fraction, seed); returns its numbers. A job process's entry."""
    keys = [*RECIPES[preset], *BUDGET[preset][fraction], *overrides]
    keys += [f"train.out_dir={out}", f"train.name={run_name(init, fraction, seed)}", f"train.seed={seed}"]
    keys.append(f"data.train_list={subset}")
    keys += [f"model.pretrained={vit}"] if init == "image" else []
    result = run(preset, keys)
    s = result.summary
    return {
        "init": init,
        "train_fraction": fraction,
        "seed": seed,
        "val_top1": s["best_val_top1"],
        "test_top1": s["test_top1"],
        "within_pair": s["test_within_pair"],
        "pair_top1": pair_top1(result.run_dir),
        "train_seconds": result.train_seconds,
        "train_clips": len(read_list(subset)),
    }


def aggregate(runs: list[dict], pretrain_seconds: float) -> list[dict]:
    """One row per (init, train_fraction): means over seeds, their spread, and the per-seed values."""
    rows = []
    for init in ("scratch", "image"):
        for fraction in sorted({r["train_fraction"] for r in runs}):
            group = sorted(
                (r for r in runs if r["init"] == init and r["train_fraction"] == fraction), key=lambda r: r["seed"]
            )
            row = {"init": init, "train_fraction": fraction, "train_clips": group[0]["train_clips"]}
            row["seeds"] = [r["seed"] for r in group]
            for key in ("test_top1", "within_pair", "pair_top1", "val_top1", "train_seconds"):
                values = [r[key] for r in group]
                row[key] = statistics.fmean(values)
                if len(values) > 1 and key != "train_seconds":
                    row[f"{key}_std"] = statistics.stdev(values)
                    row[f"{key}_seeds"] = values
            if init == "image":
                row["pretrain_seconds"] = pretrain_seconds
            rows.append(row)
    return rows


def measure(out: Path, preset: str, overrides: list[str], seeds: int, jobs: int) -> tuple[list[dict], dict]:
    """Pretrain, then every video run; returns the aggregated rows and what the pretraining did."""
    out.mkdir(parents=True, exist_ok=True)
    d = tl.load_config(preset, overrides).data
    ensure_toy_data_for(d)
    per_class, image_keys = PRETRAIN[preset]
    with open(out / "pretrain.log", "w") as log, redirect_stdout(log), redirect_stderr(log):
        result, vit = pretrain_vit(
            preset,
            [*image_keys, f"train.out_dir={out}", "train.name=vit"],
            stills=f"{d.root}_stills",
            per_class=per_class,
            out=out / "vit.safetensors",
        )
    pretrain = {
        "val_top1": result.best_val_top1,
        "test_top1": result.test["top1"],
        "seconds": result.train_seconds,
        "stills_per_class": per_class,
    }
    print(f"pretrained ViT: {pretrain['val_top1']:.1%} val top-1 on stills in {pretrain['seconds']:.0f} s", flush=True)
    subsets = {fraction: train_subset(Path(d.root), fraction, out) for fraction in FRACTIONS}
    keys = [
        (init, fraction, seed)
        for fraction in FRACTIONS
        for seed in range(seeds if fraction == min(FRACTIONS) else 1)
        for init in ("scratch", "image")
    ]
    keys.sort(key=lambda key: -key[1])  # the long runs first, so that the last to finish is a short one
    work = {(i, f, s): (out, preset, overrides, i, f, subsets[f], s, vit.resolve()) for i, f, s in keys}
    done: dict[tuple, dict] = {}
    run_all(video_run, work, jobs, done.__setitem__, logs={key: out / f"{run_name(*key)}.log" for key in keys})
    runs = [done[key] for key in keys]
    for r in runs:
        print(
            f"{r['init']:>7} {r['train_fraction']:>4.0%} seed {r['seed']}: {r['test_top1']:.1%} test top-1", flush=True
        )
    return aggregate(runs, pretrain["seconds"]), pretrain


def _mean(row: dict, key: str) -> str:
    """`row[key]` as a percentage, with its spread over seeds when there are several."""
    return f"{row[key]:.1%}" + (f" ± {row[key + '_std']:.1%}" if key + "_std" in row else "")


def markdown(rows: list[dict]) -> list[str]:
    lines = [
        "| init | training clips | test top-1 | right pair | within-pair | val top-1 | seeds | train s | pretrain s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['init']} | {r['train_clips']:,} ({r['train_fraction']:.0%}) | {_mean(r, 'test_top1')} "
            f"| {_mean(r, 'pair_top1')} | {_mean(r, 'within_pair')} | {_mean(r, 'val_top1')} | {len(r['seeds'])} "
            f"| {r['train_seconds']:.0f} | {r.get('pretrain_seconds', 0):.0f} |"
        )
    return lines


def gains(rows: list[dict]) -> dict[float, float]:
    """Test top-1 of image init minus scratch, in points, per training fraction."""
    by = {(r["init"], r["train_fraction"]): r["test_top1"] for r in rows}
    return {f: 100 * (by[("image", f)] - by[("scratch", f)]) for f in sorted({r["train_fraction"] for r in rows})}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/transfer", help="run folders and transfer.json go here")
    parser.add_argument("--preset", default="toy", choices=sorted(RECIPES))
    parser.add_argument("--seeds", type=int, default=3, help="seeds at the smallest share (1 elsewhere)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs trained at once")
    parser.add_argument("--record", action="store_true", help="append to RESULTS.md, write benchmarks/transfer.json")
    parser.add_argument("overrides", nargs="*", help="key=value, applied after the recipe to every video run")
    args = parser.parse_args(argv)
    try:
        check_jobs(args.jobs)
    except ValueError as e:
        parser.error(str(e))
    command = " ".join(["python benchmarks/transfer.py", *(argv if argv is not None else sys.argv[1:])])
    load = os.getloadavg()[0]
    start = time.perf_counter()
    out = Path(args.out)
    rows, pretrain = measure(out, args.preset, args.overrides, args.seeds, args.jobs)
    minutes = (time.perf_counter() - start) / 60
    date = datetime.date.today().isoformat()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    recipe = " ".join(RECIPES[args.preset] + args.overrides) or "none"
    for r in rows:
        r.update(command=command, date=date, machine=machine, preset=args.preset, recipe=recipe,
                 total_minutes=round(minutes, 2), jobs=args.jobs, load_average=round(load, 1), pretrain=pretrain)  # fmt: skip
    (out / "transfer.json").write_text(json.dumps(rows, indent=1) + "\n")
    gain = gains(rows)
    block = [
        f"### {date}: `{command}`",
        "",
        f"{machine}, {args.jobs} run(s) at once, load average {load:.1f} at start; preset `{args.preset}`, recipe "
        f"overrides: {recipe}; {minutes:.1f} min in all. The ViT: {pretrain['stills_per_class']} stills per class, "
        f"{pretrain['val_top1']:.1%} val / {pretrain['test_top1']:.1%} test top-1 on the stills, "
        f"{pretrain['seconds']:.0f} s. Image init minus scratch, test top-1: "
        + ", ".join(f"{g:+.1f} points at {f:.0%}" for f, g in gain.items())
        + f" (paper, K400: {PAPER['ImageNet-1K'] - PAPER['scratch']:+.1f} from ImageNet-1K).",
        "",
        *markdown(rows),
    ]
    print("\n".join(block))
    if args.record:
        record(block, out / "transfer.json")
    return rows


def record(block: list[str], written: Path, results: Path | None = None, shipped: Path = RECORD) -> None:
    """Append `block` to SECTION of RESULTS.md and ship the run's JSON as benchmarks/transfer.json."""
    append_results(SECTION, block, path=results)
    shutil.copyfile(written, shipped)


if __name__ == "__main__":
    main()
