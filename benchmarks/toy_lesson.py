"""The lesson the toy preset teaches, measured: divided attention learns temporal order, space-only cannot.

    python benchmarks/toy_lesson.py [--out runs/toy_lesson] [--record] [key=value ...]

Generates the toy dataset afresh into OUT/data (timed: what `make run` does first on a new clone), trains the
`toy` preset twice (divided_space_time, then space_only), tests both with the reference protocol, and prints
overall and within-pair accuracy and the wall time of each and of everything together. It writes
OUT/toy_lesson.json; `--record` also makes it the record the README and the notebooks quote
(benchmarks/toy_lesson.json) and adds it to benchmarks/RESULTS.md.
Target (issue #5): divided >= 90 % test top-1, space-only about 50 % within pairs, everything within about
10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch
from results import append_results, cpu_model, write_block

import timesformer_lite as tl
from timesformer_lite.data import ensure_toy_data_for
from timesformer_lite.train import run
from timesformer_lite.utils import count_parameters

RECORDED = Path(__file__).resolve().parent / "toy_lesson.json"


def readme_lines(record: dict) -> list[str]:
    """The README's account of the recorded lesson (its "toy_lesson" block), every number read from `record`."""
    lines = [
        "| attention | test top-1 | within-pair (test) | wall time |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in record["runs"]:
        chance = " (chance: 50 %)" if r["attention_type"] == "space_only" else ""
        lines.append(
            f"| `{r['attention_type']}` ({r['params']:,} parameters) | {100 * r['test_top1']:.1f} % "
            f"| {100 * r['within_pair']:.1f} %{chance} | {r['wall_seconds'] / 60:.1f} min |"
        )
    return [
        *lines,
        "",
        f"Both together took {record['total_minutes']:.1f} minutes, generating the data ({record['data_seconds']:.0f} s) and testing "
        f"included ({record['date']}, {record['machine']}, {record['threads']} threads, load average "
        f"{record['load_average']} at start; toy data recipe {record['data']}; `benchmarks/toy_lesson.json`).",
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/toy_lesson", type=Path)
    parser.add_argument("--record", action="store_true", help="also write benchmarks/toy_lesson.json and RESULTS.md")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    overrides = [f"data.root={args.out / 'data'}", f"train.out_dir={args.out}", *args.overrides]
    d = tl.load_config("toy", overrides).data
    if (args.out / "data").exists():  # timed from nothing, as on a new clone
        raise SystemExit(f"{args.out / 'data'} exists; remove it or pass another --out, so that generation is timed")
    ensure_toy_data_for(d)
    record = {"data_seconds": round(time.perf_counter() - start, 1), "runs": []}
    for scheme in ("divided_space_time", "space_only"):
        t0 = time.perf_counter()
        result = run("toy", [*overrides, f"train.name={scheme}", f"model.attention_type={scheme}"])
        s = result.summary
        params = count_parameters(tl.load_pretrained(result.best_checkpoint))
        record["runs"].append(
            {
                "attention_type": scheme,
                "params": params,
                "test_top1": s["test_top1"],
                "within_pair": s["test_within_pair"],
                "best_val_top1": s["best_val_top1"],
                "epochs": s["epochs"],
                "wall_seconds": round(time.perf_counter() - t0, 1),
            }  # fmt: skip
        )
    command = " ".join(["python benchmarks/toy_lesson.py", *(argv if argv is not None else sys.argv[1:])])
    record = {
        "command": command,
        "data": json.loads((args.out / "data" / "toy_meta.json").read_text())["recipe"],
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "load_average": round(load_before, 1),
        "total_minutes": round((time.perf_counter() - start) / 60, 2),
        **record,
    }
    (args.out / "toy_lesson.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        f"### Toy lesson, {record['date']} ({record['machine']}, {record['threads']} threads, load average "
        f"{load_before:.1f} at start)",
        "",
        f"`{command}` (toy preset: 10,000 train clips, 14 epochs, AdamW 1e-3"
        + (")" if not args.overrides else ", overridden)"),
        "",
        "| attention | test top-1 | test within-pair | best val top-1 | wall time (train + test) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| `{r['attention_type']}` | {r['test_top1']:.1%} | {r['within_pair']:.1%} | {r['best_val_top1']:.1%} "
        f"| {r['wall_seconds']:.0f} s |"
        for r in record["runs"]
    ]
    lines += [
        "",
        f"Data generated in {record['data_seconds']:.0f} s; everything together: {record['total_minutes']:.1f} min.",
    ]
    print("\n".join(lines))
    if args.record:
        RECORDED.write_text(json.dumps(record, indent=1) + "\n")
        append_results("## Toy lesson", lines)
        write_block("toy_lesson", readme_lines(record))
    return record


if __name__ == "__main__":
    main()
