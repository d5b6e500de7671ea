"""The paper's Table 1 on toy motions: every attention scheme and two ablations of the time embedding, over seeds.

    python benchmarks/table1.py --out runs/table1 [--seeds 3] [--jobs N] [--preset toy|smoke] [--record] [key=value ...]

One recipe (RECIPES[preset], on top of the preset) trains seven models, each once per seed (`train.seed` 0 ..
N-1: another initialisation, clip order and augmentation; the same data): the five schemes of Bertasius et al.
(2021), divided attention without its time embedding, and space-only attention with one. Everything a recipe
or a run chooses is chosen on the validation split (each run keeps the epoch of best validation top-1); the test
split is read once, at the end, when every model has finished training, and scores them all.

For each row: parameters (the toy model), GFLOP per clip at 8x224 (TimeSformer-B/16, the paper's setting) and at
the toy size, the seconds spent training (validation and test excluded; with --jobs N, N runs train at once,
each with cores / N threads, so a run's seconds are those it took beside the others), and over the seeds the mean
and standard deviation of validation top-1, test top-1 and within-pair accuracy (the true class beats its
time-reversed partner). Two more numbers show whether a model can see frame order at all: the largest change of
its logits when a test clip is played backwards, and its within-pair accuracy on the test clips plus their
reversals (exactly 50 % for a model blind to order).

It prints the table and writes OUT/table1.json. `--record` also makes it the recorded table: it writes
benchmarks/table1.json, adds a dated section to benchmarks/RESULTS.md and rewrites the README's account of it (its
"table1" block); a plain run touches nothing outside OUT. Runs are resumed (`train.resume=auto`): a stopped table
continues where it stopped, and a finished run is not trained again. `--levers BATCHES` measures instead what a
run costs and what makes it cheaper (`levers`).
Targets (issue 20): three seeds in <= 30 minutes and one in <= 12 on 2 CPU cores, divided >= 95 % test top-1
(mean), both order-blind rows within 50 +- 3 % within pairs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

import timesformer_lite as tl
from timesformer_lite.data import build_dataset
from timesformer_lite.data.loader import usable_cores
from timesformer_lite.data.toy import ensure_toy_data_for
from timesformer_lite.train import run
from timesformer_lite.train.evaluate import evaluate
from timesformer_lite.train.metrics import pair_partners, within_pair_accuracy
from timesformer_lite.utils import count_parameters, model_flops

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # `results` beside this file; job processes find this module as `table1`
    sys.path.append(str(BENCH))
from jobs import check_jobs, run_all, threads_per_job  # noqa: E402
from results import RESULTS, append_results, cpu_model, write_block  # noqa: E402

RECORDED = BENCH / "table1.json"
README = BENCH.parent / "README.md"
SECTION = "## Table 1 on toy motions"
# (attention_type, time_embed): None keeps the scheme's own (a time embedding for every scheme but space_only)
ROWS = [
    ("divided_space_time", None),
    ("joint_space_time", None),
    ("space_only", None),
    ("sparse_local_global", None),
    ("axial", None),
    ("divided_space_time", False),
    ("space_only", True),
]
# On top of the preset, each chosen on validation top-1 of divided attention over three seeds and on measured cost
# (benchmarks/RESULTS.md, "Table 1 levers"). toy: `make run`'s recipe (10,000 clips, all 8 frames, 14 epochs) with
# bf16 autocast (1.37-1.66x the clips/s of float32, about a point of validation top-1), scale jitter (each
# training clip's short side resized to 32-40 px before its random 32 px crop) and batch 16 at lr 1e-3 (twice the
# optimizer steps of batch 32 for about 1.07x the seconds): mean validation top-1 96.8 % (seeds 99.2, 92.8, 98.4),
# against 92.6-94.9 % in three three-seed runs at batch 32. The rotation pair is learned late or not at all; more
# steps at a high learning rate learn it more often (two seeds of three, against four of nine at batch 32).
# smoke: the preset as it is (one epoch), for tests and 06b.
RECIPES = {
    "toy": ["data.train_scale=[32, 40]", "train.amp=bf16", "train.batch_size=16", "train.lr_batch=16"],
    "smoke": [],
}
# Bertasius et al. (2021), TimeSformer-B 8 x 224 from ImageNet-21K weights, top-1 % on Kinetics-400 and
# Something-Something-v2 (SSv2): Table 1 (the attention schemes) and Table 4 (the positional embeddings, all with
# divided attention). Toy motions is built like SSv2: the label is the order.
PAPER = {"divided_space_time": (78.0, 59.5), "joint_space_time": (77.4, 58.5), "space_only": (76.9, 36.6),
         "sparse_local_global": (75.9, 56.3), "axial": (73.5, 56.2)}  # fmt: skip
# minutes a run of N seeds may take on 2 CPU cores (issue 20); the README says whether the recorded run met its own
TARGET_MINUTES = {1: 12, 3: 30}
PAPER_POSITIONAL = {"none": (75.4, 45.8), "space only": (77.8, 52.5), "space and time": (78.0, 59.5)}
# what every row of table1.json holds; the means are over the seeds, `_std` their sample standard deviation
KEYS = ["attention_type", "time_embed", "params", "gflop_8x224", "gflop_toy", "seeds", "train_seconds", "val_top1",
        "val_top1_std", "test_top1", "test_top1_std", "within_pair", "within_pair_std", "within_pair_reversed",
        "reversal_change", "per_seed"]  # fmt: skip


def row_name(attention_type: str, time_embed: bool | None) -> str:
    return attention_type + ("" if time_embed is None else ("_with_time_embed" if time_embed else "_no_time_embed"))


def run_name(row: tuple, seed: int) -> str:
    """The run folder (and log) of one row trained with one seed."""
    return f"{row_name(*row)}_seed{seed}"


def row_config(out: Path, preset: str, overrides: list[str], row: tuple, seed: int) -> tl.Config:
    """The config of `row` trained with `seed`: preset, recipe, overrides, then the row's own keys."""
    attention_type, time_embed = row
    keys = [*RECIPES[preset], *overrides, f"model.attention_type={attention_type}"]
    keys += [] if time_embed is None else [f"model.time_embed={str(time_embed).lower()}"]
    keys += [f"train.seed={seed}", f"train.out_dir={out}", f"train.name={run_name(row, seed)}"]
    # the test split is read by `test_all` once every run has finished; a stopped table resumes each run
    return tl.load_config(preset, [*keys, "train.test=false", "train.resume=auto"])


def train_row(out: Path, preset: str, overrides: list[str], row: tuple, seed: int) -> dict:
    """Train one row with one seed (run folder out/<run name>/); validation only. Returns what it chose."""
    result = run(row_config(out, preset, overrides, row, seed))
    return {"seed": seed, "val_top1": result.best_val_top1, "best_epoch": result.best_epoch,
            "train_seconds": result.train_seconds}  # fmt: skip


def train_all(out: Path, preset: str, overrides: list[str], runs: list[tuple], jobs: int) -> dict[tuple, dict]:
    """Train every (row, seed) of `runs`, `jobs` at once; returns {(row, seed): what `train_row` returns}.

    With jobs > 1 each run goes to a job process (spawned: no forked torch thread pools) that dies with this
    one, as the data loader's pool workers do, so a killed table leaves no process behind; runs are handed out
    longest first, so that the last to finish is a short one.
    """
    out.mkdir(parents=True, exist_ok=True)
    done: dict[tuple, dict] = {}

    def finished(key: tuple, result: dict) -> None:
        done[key] = result
        print(f"{run_name(*key)}: {result['val_top1']:.1%} val top-1, {result['train_seconds']:.0f} s", flush=True)
        (out / "table1.partial.json").write_text(json.dumps([{"run": run_name(*k), **v} for k, v in done.items()]))

    if jobs <= 1:
        run_all(train_row, {key: (out, preset, overrides, *key) for key in runs}, 1, finished)
        return done
    cfg = tl.load_config(preset, [*RECIPES[preset], *overrides])

    def cost(key: tuple) -> float:
        return model_flops(tl.config.model_config(cfg.model, attention_type=key[0][0], time_embed=key[0][1]))

    work = {key: (out, preset, overrides, *key) for key in sorted(runs, key=cost, reverse=True)}
    run_all(train_row, work, jobs, finished, logs={key: out / f"{run_name(*key)}.log" for key in runs})
    return done


def test_all(cfg: tl.Config, checkpoints: dict[tuple, Path]) -> dict[tuple, dict]:
    """The one read of the test split: every checkpoint on the same test views, then on the views reversed.

    A reversed clip is a clip of the partner class, so a model whose logits cannot depend on frame order is at
    exactly 50 % within pairs on the clips plus their reversals. The models run in float32 whatever precision
    they trained in, so that such a model's logits move by rounding only (about 1e-6) when a clip is reversed.
    Returns {key: test_top1, within_pair, within_pair_reversed, reversal_change (the largest |logit change| a
    reversal caused)}.
    """
    test_set = build_dataset(cfg, "test")
    items = [test_set[i] for i in range(len(test_set))]
    views = torch.stack([it["video"] for it in items])  # (B, V, T, C, H, W)
    labels = torch.tensor([it["label"] for it in items])
    partners = pair_partners(cfg.model.num_classes)
    size = cfg.train.batch_size

    def batches(video: torch.Tensor, label: torch.Tensor) -> list[dict]:
        index = torch.arange(len(label))
        return [{"video": video[i : i + size], "label": label[i : i + size], "index": index[i : i + size],
                 "skipped": 0} for i in range(0, len(label), size)]  # fmt: skip

    results = {}
    for key, checkpoint in checkpoints.items():
        model = tl.load_pretrained(checkpoint)
        common = {"device": torch.device("cpu"), "num_classes": cfg.model.num_classes, "pairs": True}
        forward = evaluate(model, batches(views, labels), **common)
        backward = evaluate(model, batches(views.flip(2), partners[labels]), **common)  # flip(2): frames reversed
        both = torch.cat([forward.scores, backward.scores])
        results[key] = {
            "test_top1": forward.top1,
            "within_pair": forward.within_pair,
            "within_pair_reversed": within_pair_accuracy(both, torch.cat([labels, partners[labels]]), partners),
            "reversal_change": float((forward.scores - backward.scores).abs().max()),
        }
    return results


def describe(cfg: tl.Config, row: tuple) -> dict:
    """What a row is, whatever it learns: parameters, GFLOP at the paper's size and at the toy size."""
    attention_type, time_embed = row
    toy = tl.config.model_config(cfg.model, attention_type=attention_type, time_embed=time_embed)
    with torch.device("meta"):
        model = tl.TimeSformer(toy)
    paper = tl.load_config("k400").model  # TimeSformer-B/16, 8 x 224, 400 classes
    big = tl.config.model_config(paper, attention_type=attention_type, time_embed=time_embed)
    return {
        "attention_type": attention_type,
        "time_embed": model.time_embed is not None,
        "params": count_parameters(model),
        "gflop_8x224": model_flops(big) / 1e9,
        "gflop_toy": model_flops(toy) / 1e9,
    }


def spread(values: list[float]) -> float | None:
    """Sample standard deviation over the seeds; None for a single seed, which has no spread to show."""
    return statistics.stdev(values) if len(values) > 1 else None


def aggregate(cfg: tl.Config, row: tuple, per_seed: list[dict]) -> dict:
    """One row of the table: its description and, over the seeds, means and spreads (KEYS)."""
    out = describe(cfg, row) | {"seeds": [s["seed"] for s in per_seed]}
    out["train_seconds"] = statistics.mean(s["train_seconds"] for s in per_seed)
    for key in ("val_top1", "test_top1", "within_pair"):
        values = [s[key] for s in per_seed]
        out[key], out[f"{key}_std"] = statistics.mean(values), spread(values)
    out["within_pair_reversed"] = statistics.mean(s["within_pair_reversed"] for s in per_seed)
    out["reversal_change"] = max(s["reversal_change"] for s in per_seed)  # the largest over every seed
    return out | {"per_seed": per_seed}


def measure(
    out: Path, preset: str = "toy", overrides: list[str] | None = None, rows=ROWS, seeds=(0,), jobs: int = 1
) -> list[dict]:
    """Train every row with every seed, then test them all; returns the rows (dicts with KEYS) in `rows` order.

    Args:
        out: run folders go to out/<row name>_seed<seed>/.
        preset: "toy" (the recorded table) or "smoke" (seconds: tests, notebook 06b).
        overrides: key=value strings applied after RECIPES[preset].
        rows: (attention_type, time_embed) pairs, ROWS by default.
        seeds: the `train.seed` of each training of a row.
        jobs: runs trained at once, each in its own process with cores // jobs threads (its log goes to
            out/<run name>.log). The toy models are small enough that one training leaves a core idle
            whenever Python runs (op dispatch, data loading): on 2 cores, two runs at once with one thread each
            gave 1.25-1.4x the clips per second of one run with two (2026-12-02). 1: in this process, in order.
    """
    overrides = list(overrides or [])
    check_jobs(jobs)
    cfg = tl.load_config(preset, [*RECIPES[preset], *overrides])
    if cfg.data.dataset == "toy":  # generated once here, not by two jobs at once
        d = cfg.data
        ensure_toy_data_for(d)
    runs = [(row, seed) for row in rows for seed in seeds]
    trained = train_all(out, preset, overrides, runs, jobs)
    checkpoints = {key: out / run_name(*key) / "best.pt" for key in runs}
    tested = test_all(cfg, checkpoints)  # after every training: the test split is read here and nowhere else
    per_seed = {key: trained[key] | tested[key] for key in runs}
    return [aggregate(cfg, row, [per_seed[(row, seed)] for seed in seeds]) for row in rows]


# the contenders `--levers` times against each other: the step in float32 and under bf16 autocast, with and without
# scale jitter (which costs a bilinear resize of every training clip)
LEVERS = {
    "fp32, jitter": ["train.amp=none", "data.train_scale=[32, 40]"],
    "bf16, jitter": ["train.amp=bf16", "data.train_scale=[32, 40]"],
    "bf16, no jitter": ["train.amp=bf16", "data.train_scale=[32, 32]"],
}


def levers(out: Path, preset: str, overrides: list[str], batches: int) -> list[str]:
    """What a run of the table costs, and what makes it cheaper, measured in this process on one thread (a job's
    share of 2 cores), contenders interleaved batch by batch so that a change of load hits them alike.

    For every scheme: clips per second of the whole training step (the batch from the loader, forward, backward,
    optimizer step) for each of LEVERS, and the seconds of one validation against those of one epoch of training
    with the last of them. Returns markdown rows.
    """
    from timesformer_lite.train.distributed import setup
    from timesformer_lite.train.trainer import Trainer

    torch.set_num_threads(1)
    env, lines = setup("cpu"), []
    for row in ROWS[:5]:
        trainers = {name: Trainer(row_config(out, preset, [*overrides, *keys], row, 0), env)
                    for name, keys in LEVERS.items()}  # fmt: skip
        seconds: dict[str, list[float]] = {name: [] for name in trainers}
        for trainer in trainers.values():
            trainer.start_epoch()
        batches_of = {name: iter(trainer.train_loader) for name, trainer in trainers.items()}
        for _ in range(batches):
            for name, trainer in trainers.items():
                start = time.perf_counter()
                trainer.train_step([next(batches_of[name])])
                seconds[name].append(time.perf_counter() - start)
        rate = [trainers[name].cfg.train.batch_size / statistics.median(s[2:]) for name, s in seconds.items()]
        last = trainers[list(LEVERS)[-1]]
        start = time.perf_counter()
        last.validate()
        validation, epoch = time.perf_counter() - start, len(last.train_set) / rate[-1]
        lines.append(
            f"| `{row[0]}` | {' | '.join(f'{r:.0f}' for r in rate)} | {rate[1] / rate[0]:.2f}x "
            f"| {rate[2] / rate[1]:.2f}x | {validation:.1f} s against {epoch:.0f} s ({validation / epoch:.1%}) |"
        )
        print(lines[-1], flush=True)
    return lines


def pct(mean: float | None, std: float | None) -> str:
    """A mean over seeds and its spread in percent: "96.1 ± 0.8" (the mean alone for one seed; "-" for none)."""
    if mean is None:
        return "-"
    return f"{100 * mean:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def markdown(rows: list[dict]) -> list[str]:
    lines = [
        "| attention | time embedding | parameters | GFLOP 8x224 | GFLOP toy | seconds | val top-1 (%) "
        "| test top-1 (%) | within-pair (%) | within-pair, clips + reversed (%) | max logit change, reversed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| `{r['attention_type']}` | {'yes' if r['time_embed'] else 'no'} | {r['params']:,} "
            f"| {r['gflop_8x224']:.1f} | {r['gflop_toy']:.4f} | {r['train_seconds']:.0f} "
            f"| {pct(r['val_top1'], r['val_top1_std'])} | {pct(r['test_top1'], r['test_top1_std'])} "
            f"| {pct(r['within_pair'], r['within_pair_std'])} | {100 * r['within_pair_reversed']:.1f} "
            f"| {r['reversal_change']:.1e} |"
        )
    return lines


def gaps(rows: list[dict], key: str = "test_top1") -> list[str]:
    """Each row against the next one down in `key`: is the difference of their means larger than the spread
    (the sum of their two standard deviations over the seeds, where the mean +- std intervals stop overlapping)?

    A rule of thumb, not a significance test: three seeds give a rough spread, and the test clips are the same
    500 for every seed, so the spread does not include their sampling noise.
    """
    ranked = sorted(rows, key=lambda r: r[key], reverse=True)
    lines = []
    for a, b in zip(ranked, ranked[1:]):
        diff, name = 100 * (a[key] - b[key]), f"{label(a)} vs {label(b)}"
        if a[f"{key}_std"] is None or b[f"{key}_std"] is None:
            lines.append(f"{name}: {diff:.1f} points (one seed: no spread to compare)")
            continue
        both = 100 * (a[f"{key}_std"] + b[f"{key}_std"])
        lines.append(f"{name}: {diff:.1f} points, {'larger than' if diff > both else 'within'} the spread ({both:.1f})")
    return lines


def label(r: dict) -> str:
    """A row's name as the table shows it: the scheme, and the time embedding where it is ablated."""
    own = r["time_embed"] == (r["attention_type"] != "space_only")
    return row_name(r["attention_type"], None if own else r["time_embed"])


def verdicts(table: dict) -> str:
    """The recorded run against issue 20's targets, each with its measured value: the time (TARGET_MINUTES, for
    runs on 2 cores), divided attention's mean test top-1 (>= 95 %), the order-blind rows within pairs (50 +- 3 %)."""
    said = lambda ok: "met" if ok else "not met"  # noqa: E731
    parts = []
    target = TARGET_MINUTES.get(len(table["seeds"]))
    if target is not None and table["machine"].split(", ")[1] == "2 cores":
        minutes = table["total_minutes"]
        parts.append(f"{minutes:.1f} min on 2 CPU cores (target {target}: {said(minutes <= target)})")
    divided = next(r for r in table["rows"] if r["attention_type"] == "divided_space_time" and r["time_embed"])
    parts.append(f"divided attention {100 * divided['test_top1']:.1f} % test top-1 (target 95: "
                 f"{said(divided['test_top1'] >= 0.95)})")  # fmt: skip
    blind = [r for r in table["rows"] if not r["time_embed"]]
    within = " and ".join(f"{100 * r['within_pair']:.1f} %" for r in blind)
    ok = all(abs(r["within_pair"] - 0.5) <= 0.03 for r in blind)
    parts.append(f"the order-blind rows {within} within pairs (target 50 ± 3: {said(ok)})")
    return "Against issue 20's targets: " + "; ".join(parts) + "."


def readme_lines(table: dict) -> list[str]:
    """The README's account of a recorded table (its "table1" block), every number read from `table`."""
    seeds = len(table["seeds"])
    lines = [
        f"The recorded run ({table['date']}, {table['machine']}, {table['jobs']} trainings at once with "
        f"{table['threads']} thread(s) each: {table['total_minutes']:.1f} min for {seeds} seed(s) of the seven rows; "
        f"toy data recipe {table['data']}; recipe overrides `{table['recipe']}`), "
        + ("mean ± standard deviation over the seeds, " if seeds > 1 else "one seed, ")
        + "beside the paper's top-1 (ImageNet-21K weights, Table 1):",
        "",
        "| row | test top-1 (%) | within pairs (%) | within pairs, clips + reversals (%) | paper K400 | paper SSv2 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in table["rows"]:
        k400, ssv2 = PAPER.get(label(r), ("-", "-"))
        top1, within = pct(r["test_top1"], r["test_top1_std"]), pct(r["within_pair"], r["within_pair_std"])
        lines.append(f"| `{label(r)}` | {top1} | {within} | {100 * r['within_pair_reversed']:.1f} | {k400} | {ssv2} |")
    gap = "Test top-1 of each row against the next one down: " + "; ".join(gaps(table["rows"])) + "."
    return [*lines, "", gap, "", verdicts(table)]


def record(table: dict, block: list[str]) -> None:
    """Make this run the recorded table: RECORDED (benchmarks/table1.json), a dated section of RESULTS and the
    README's sentences about it."""
    RECORDED.write_text(json.dumps(table, indent=1) + "\n")
    append_results(SECTION, block, path=RESULTS)
    write_block("table1", readme_lines(table), path=README)


def out_folder(path: str) -> Path:
    """--out as a folder that can be written to, or a one-line error (ValueError)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out '{out}' is a file; name a folder (it gets a run folder per row and seed)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out '{out}' cannot be made ({e.strerror}); name a folder you can write to") from None
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/table1", help="run folders and table1.json go here")
    parser.add_argument("--preset", default="toy", choices=sorted(RECIPES))
    parser.add_argument("--seeds", type=int, default=3, help="trainings of every row (train.seed 0 .. N-1)")
    parser.add_argument("--jobs", type=int, default=None, help="runs trained at once, 1 to the cores (default)")
    parser.add_argument(
        "--record", action="store_true", help="also write benchmarks/table1.json and add the run to RESULTS.md"
    )
    parser.add_argument(
        "--levers", type=int, default=0, metavar="BATCHES", help="measure the cost levers over BATCHES steps instead"
    )
    parser.add_argument("overrides", nargs="*", help="key=value, applied after the recipe")
    args = parser.parse_args(argv)
    if args.levers:
        columns = " | ".join(f"clips/s, {name}" for name in LEVERS)
        header = [f"| scheme | {columns} | bf16 / fp32 | no jitter / jitter | one validation against one epoch |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]  # fmt: skip
        print("\n".join(header), flush=True)
        lines = levers(out_folder(args.out), args.preset, args.overrides, args.levers)
        if args.record:
            title = f"### {datetime.date.today().isoformat()}: `python benchmarks/table1.py --levers {args.levers}`"
            append_results("## Table 1 levers", [title, "", *header, *lines], path=RESULTS)
        return {"levers": lines}
    jobs = usable_cores() if args.jobs is None else args.jobs
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds {args.seeds} must be at least 1")
        check_jobs(jobs)
        out = out_folder(args.out)
    except ValueError as e:
        parser.error(str(e))
    command = " ".join(["python benchmarks/table1.py", *(argv if argv is not None else sys.argv[1:])])
    load = os.getloadavg()[0]
    start = time.perf_counter()
    seeds = list(range(args.seeds))
    rows = measure(out, args.preset, args.overrides, seeds=seeds, jobs=jobs)
    cfg = tl.load_config(args.preset, [*RECIPES[args.preset], *args.overrides])
    minutes = (time.perf_counter() - start) / 60
    recipe = " ".join(RECIPES[args.preset] + args.overrides) or "none"
    threads = threads_per_job(jobs)
    table = {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": f"{cpu_model()}, {usable_cores()} cores, torch {torch.__version__}",
        "preset": args.preset,
        "data": json.loads((Path(cfg.data.root) / "toy_meta.json").read_text())["recipe"],
        "recipe": recipe,
        "seeds": seeds,
        "jobs": jobs,
        "threads": threads,
        "load_average": round(load, 1),
        "total_minutes": round(minutes, 2),
        "rows": rows,
    }
    (out / "table1.json").write_text(json.dumps(table, indent=1) + "\n")
    block = [
        f"### {table['date']}: `{command}`",
        "",
        f"{table['machine']}, {jobs} run(s) at once with {threads} thread(s) each, load average {load:.1f} at start; "
        f"preset `{args.preset}`, recipe overrides: {recipe}; {len(seeds)} seed(s); {minutes:.1f} min for all "
        f"{len(rows) * len(seeds)} trainings. Chosen on validation: each run's epoch (best val top-1). The test "
        "split was read once, after the last training. Means ± standard deviations over the seeds.",
        "",
        *markdown(rows),
        "",
        "Test top-1, each row against the next one down: " + "; ".join(gaps(rows)) + ".",
    ]
    print("\n".join(block))
    if args.record:
        record(table, block)
    return table


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as interrupt:  # the job processes are already ended (`_stop`); the runs resume
        print(
            f"table1: interrupted ({str(interrupt) or 'Ctrl-C'}); the same command continues where it stopped",
            file=sys.stderr,
        )
        sys.exit(130)
