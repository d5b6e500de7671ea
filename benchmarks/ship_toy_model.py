"""Ship a finished `make run` as the package's trained toy model (timesformer_lite/assets/).

    python benchmarks/ship_toy_model.py RUN_DIR --command "make run" [--date 2026-12-01]

Reads RUN_DIR/best.pt and RUN_DIR/summary.json (what `make run` leaves in runs/toy/), writes
timesformer_lite/assets/toy_divided.safetensors (float32, with `command` and `date` added to its metadata) and
toy_divided_history.json (the per-epoch history, the test numbers, the command and the date).
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

import timesformer_lite as tl
from timesformer_lite.assets import ASSETS, toy_model_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--command", required=True, help="the command that trained the run, as a reader would type it")
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    args = parser.parse_args(argv)
    summary = json.loads((args.run_dir / "summary.json").read_text())
    path = tl.save_model(toy_model_path(), tl.load_pretrained(args.run_dir / "best.pt"))
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    save_file(load_file(str(path)), str(path), metadata={**metadata, "command": args.command, "date": args.date})
    keys = ("attention_type", "epochs", "best_epoch", "best_val_top1", "test_top1", "test_top5", "test_within_pair")
    history = {"command": args.command, "date": args.date, **{k: summary[k] for k in keys}}
    history |= {"wall_time_s": round(summary["wall_time_s"], 1), "history": summary["history"]}
    (ASSETS / "toy_divided_history.json").write_text(json.dumps(history, indent=1) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB) and its history: test top-1 {summary['test_top1']:.1%}")


if __name__ == "__main__":
    main()
