"""Ship a finished `make run` as the package's trained toy model (timesformer_lite/assets/).

    python benchmarks/ship_toy_model.py RUN_DIR --command "make run" [--date 2026-12-01]

Reads RUN_DIR/best.pt, RUN_DIR/summary.json and RUN_DIR/config.yaml (what `make run` leaves in runs/toy/), writes
timesformer_lite/assets/toy_divided.safetensors (float32, with `command` and `date` added to its metadata) and
toy_divided_history.json (the per-epoch history, the test numbers, the toy data recipe, the command and the
date), and rewrites the README's sentences about the shipped model (its "toy_model" block) from them.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import yaml
from results import write_block
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import timesformer_lite as tl
from timesformer_lite.assets import ASSETS, toy_model_path


def readme_lines(history: dict, size_bytes: int) -> list[str]:
    """The README's account of the shipped model (its "toy_model" block), every number read from its record."""
    return [
        "The divided model of one such run is shipped with the package "
        f"(`timesformer_lite/assets/toy_divided.safetensors`, {size_bytes / 1e3:.0f} kB, with its per-epoch history; "
        f"`{history['command']}` on {history['date']}, toy data recipe {history['data']}: "
        f"{100 * history['test_top1']:.1f} % test top-1 and {100 * history['test_within_pair']:.1f} % within pairs "
        f"after {history['epochs']} epochs, best validation top-1 {100 * history['best_val_top1']:.1f} % at epoch "
        f"{history['best_epoch']})."
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--command", required=True, help="the command that trained the run, as a reader would type it")
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    args = parser.parse_args(argv)
    summary = json.loads((args.run_dir / "summary.json").read_text())
    root = Path(yaml.safe_load((args.run_dir / "config.yaml").read_text())["data"]["root"])
    data = json.loads((root / "toy_meta.json").read_text())["recipe"]
    path = tl.save_model(toy_model_path(), tl.load_pretrained(args.run_dir / "best.pt"))
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    save_file(load_file(str(path)), str(path), metadata={**metadata, "command": args.command, "date": args.date})
    keys = ("attention_type", "epochs", "best_epoch", "best_val_top1", "test_top1", "test_top5", "test_within_pair")
    history = {"command": args.command, "date": args.date, "data": data, **{k: summary[k] for k in keys}}
    history |= {"wall_time_s": round(summary["wall_time_s"], 1), "history": summary["history"]}
    (ASSETS / "toy_divided_history.json").write_text(json.dumps(history, indent=1) + "\n")
    write_block("toy_model", readme_lines(history, path.stat().st_size))
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB) and its history: test top-1 {summary['test_top1']:.1%}")


if __name__ == "__main__":
    main()
