"""benchmarks/table1.py: the paper's Table 1 on toy motions (five schemes, two time-embedding ablations), over seeds.

The script runs end to end at smoke size (seven rows, two seeds, one-epoch trainings), reads the test split once,
after the last training, and its order test is exact: a model without a time embedding gives a clip and the clip
reversed the same logits, so on the test clips plus their reversals it is at exactly 50 % within pairs. A plain run
leaves the checkout alone; `--record` writes the recorded table. Its job processes die with it. The recorded
full-size run shipped in benchmarks/table1.json meets the issue's targets.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from bench_scripts import BENCH, bench_module

import timesformer_lite
import timesformer_lite.train.trainer

table1, results = bench_module("table1"), bench_module("results")

SCHEMES = {"divided_space_time", "joint_space_time", "space_only", "sparse_local_global", "axial"}
SMOKE = ["--preset", "smoke", "--seeds", "2", "train.device=cpu"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("table1")
    recorded = {path: path.read_bytes() for path in (BENCH / "RESULTS.md", table1.RECORDED)}
    table = table1.main(["--out", str(out), "--jobs", "2", *SMOKE])
    assert {path: path.read_bytes() for path in recorded} == recorded  # a plain run touches nothing but --out
    return out, table


@pytest.mark.slow
def test_smoke_table_has_seven_rows_with_means_and_spreads_over_the_seeds(smoke):
    out, table = smoke
    written = json.loads((out / "table1.json").read_text())
    assert written == json.loads(json.dumps(table))
    assert table["seeds"] == [0, 1] and table["jobs"] == 2 and table["total_minutes"] > 0
    rows = written["rows"]
    assert len(rows) == 7 and all(set(table1.KEYS) <= set(r) for r in rows)
    assert {r["attention_type"] for r in rows} == SCHEMES
    for r in rows:
        assert r["seeds"] == [s["seed"] for s in r["per_seed"]] == [0, 1]
        for key in ("val_top1", "test_top1", "within_pair"):
            values = [s[key] for s in r["per_seed"]]
            assert r[key] == pytest.approx(statistics.mean(values)) and 0 <= r[key] <= 1
            assert r[f"{key}_std"] == pytest.approx(statistics.stdev(values))
    for row in table1.ROWS:  # every run trained in a job process, its training log beside its run folder
        assert all("epoch  1/1" in (out / f"{table1.run_name(row, seed)}.log").read_text() for seed in (0, 1))
    kinds = [(r["attention_type"], r["time_embed"]) for r in rows]
    assert ("divided_space_time", False) in kinds and ("space_only", True) in kinds and ("space_only", False) in kinds
    assert round(rows[0]["gflop_8x224"], 1) == 391.7
    with_te = [r for r in rows if r["attention_type"] == "space_only" and r["time_embed"]][0]
    without = [r for r in rows if r["attention_type"] == "space_only" and not r["time_embed"]][0]
    assert with_te["params"] - without["params"] == 4 * 32  # smoke: a (T=4, D=32) time embedding, nothing else


@pytest.mark.slow
def test_models_without_time_embedding_are_exactly_at_chance_on_reversed_clips(smoke):
    _, table = smoke
    for r in table["rows"]:
        if r["time_embed"]:
            assert r["reversal_change"] > 1e-5, r  # reversing a clip moves its logits
        else:
            assert r["reversal_change"] < 1e-5, r  # rounding only
            assert all(s["within_pair_reversed"] == 0.5 for s in r["per_seed"]), r


@pytest.mark.slow
def test_record_makes_the_run_the_recorded_table_without_training_again(smoke, tmp_path, monkeypatch):
    out, table = smoke
    monkeypatch.setattr(table1, "RECORDED", tmp_path / "table1.json")
    monkeypatch.setattr(table1, "RESULTS", tmp_path / "RESULTS.md")
    monkeypatch.setattr(table1, "README", tmp_path / "README.md")
    block = "\n".join(results.block_marks("table1"))
    (tmp_path / "README.md").write_text(f"# readme\n\n{block}\n\nafter\n")
    again = table1.main(["--out", str(out), "--jobs", "1", "--record", *SMOKE])  # every run resumes finished
    assert json.loads((tmp_path / "table1.json").read_text()) == json.loads(json.dumps(again))
    for old, new in zip(table["rows"], again["rows"]):
        for a, b in zip(old["per_seed"], new["per_seed"]):  # the same checkpoints, tested the same way
            assert (a["train_seconds"], a["test_top1"], a["within_pair"]) == (
                b["train_seconds"], b["test_top1"], b["within_pair"],
            )  # fmt: skip
    text = (tmp_path / "RESULTS.md").read_text()
    assert table1.SECTION in text and "--record" in text and "The test split was read once" in text
    assert "| `divided_space_time` | yes |" in text
    readme = (tmp_path / "README.md").read_text()  # its block rewritten from the record, the rest kept
    assert results.read_block(readme, "table1") == table1.readme_lines(again) and readme.endswith("\n\nafter\n")


def test_the_test_split_is_read_once_after_every_training(tmp_path, monkeypatch):
    reads = []

    def spy(build):
        def build_dataset(cfg, split, *args, **kwargs):
            reads.append(split)
            return build(cfg, split, *args, **kwargs)

        return build_dataset

    for module in (timesformer_lite.data, timesformer_lite.train.trainer, table1):
        monkeypatch.setattr(module, "build_dataset", spy(module.build_dataset))
    rows = table1.measure(tmp_path, "smoke", ["train.device=cpu"], rows=table1.ROWS[:2], seeds=[0, 1], jobs=1)
    assert reads.count("test") == 1 and reads[-1] == "test", reads
    assert reads[:-1] == ["train", "val"] * 4  # two rows, two seeds: trained and validated, never tested
    assert all(json.loads((tmp_path / table1.run_name(row, 0) / "summary.json").read_text())["test_top1"] is None
               for row in table1.ROWS[:2])  # fmt: skip
    assert [len(r["per_seed"]) for r in rows] == [2, 2]


@pytest.mark.parametrize("jobs", [0, -3, os.cpu_count() + 1])
def test_jobs_outside_one_to_the_cores_is_a_one_line_error(jobs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        table1.main(["--out", str(tmp_path), "--jobs", str(jobs), *SMOKE])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"--jobs {jobs} must be 1 to {len(os.sched_getaffinity(0))}, the cores this process may use" in error


def test_out_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "table").write_text("mine")
    with pytest.raises(SystemExit):
        table1.main(["--out", str(tmp_path / "table"), "--jobs", "1", *SMOKE])
    assert "is a file; name a folder" in capsys.readouterr().err.strip().splitlines()[-1]
    assert (tmp_path / "table").read_text() == "mine"


def test_gaps_say_which_differences_are_larger_than_the_spread():
    rows = [
        {"attention_type": "axial", "time_embed": True, "test_top1": 0.80, "test_top1_std": 0.02},
        {"attention_type": "divided_space_time", "time_embed": True, "test_top1": 0.96, "test_top1_std": 0.01},
        {"attention_type": "joint_space_time", "time_embed": True, "test_top1": 0.94, "test_top1_std": 0.02},
    ]
    assert table1.gaps(rows) == [
        "divided_space_time vs joint_space_time: 2.0 points, within the spread (3.0)",
        "joint_space_time vs axial: 14.0 points, larger than the spread (4.0)",
    ]
    assert table1.pct(0.961, 0.0123) == "96.1 ± 1.2" and table1.pct(0.5, None) == "50.0"


@pytest.mark.slow
def test_kill_9_of_the_table_leaves_no_process_behind(tmp_path):
    """Issue 24: the row workers and multiprocessing's resource tracker used to outlive a killed parent."""
    command = [sys.executable, str(BENCH / "table1.py"), "--out", str(tmp_path), "--jobs", "2", *SMOKE[:2]]
    command += ["--seeds", "5", "train.device=cpu", "train.epochs=3"]  # long enough to be killed mid-table
    parent = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not list(tmp_path.glob("*_seed*/last.pt")):  # the job processes are training
            assert parent.poll() is None and time.monotonic() < deadline, "the table never started training"
            time.sleep(0.5)
        children = psutil.Process(parent.pid).children(recursive=True)
        assert len(children) >= 3, children  # two job processes and the resource tracker, at least
        assert len(_session_alive(parent.pid)) == len(children) + 1  # the session holds them all
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20  # a job process notices its parent is gone within 0.2 s
        while _session_alive(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _session_alive(parent.pid), _session_alive(parent.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # whatever the test found, nothing outlives it


def _session_alive(session: int) -> list[str]:
    """The running processes of `session` (everything the table started, however deep, keeps its session id)."""
    alive = []
    for p in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if os.getsid(p.pid) == session and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:80]}")
        except (ProcessLookupError, PermissionError):
            pass
    return alive


def test_the_verdicts_state_each_target_with_its_measured_value():
    rows = [
        {"attention_type": "divided_space_time", "time_embed": True, "test_top1": 0.951, "within_pair": 0.97},
        {"attention_type": "space_only", "time_embed": False, "test_top1": 0.4, "within_pair": 0.525},
        {"attention_type": "divided_space_time", "time_embed": False, "test_top1": 0.5, "within_pair": 0.49},
    ]
    table = {"seeds": [0, 1, 2], "machine": "AMD EPYC, 2 cores, torch 2.13.0+cpu", "total_minutes": 29.9, "rows": rows}
    assert table1.verdicts(table) == (
        "Against issue 20's targets: 29.9 min on 2 CPU cores (target 30: met); divided attention 95.1 % test top-1 "
        "(target 95: met); the order-blind rows 52.5 % and 49.0 % within pairs (target 50 ± 3: met)."
    )
    rows[0]["test_top1"], rows[1]["within_pair"] = 0.949, 0.535
    said = table1.verdicts({**table, "total_minutes": 30.1})
    assert said.count("not met") == 3 and "30.1 min" in said and "94.9 %" in said and "53.5 %" in said
    assert "(target 12: not met)" in table1.verdicts({**table, "seeds": [0], "total_minutes": 12.5})
    for other in ({**table, "seeds": [0, 1]}, {**table, "machine": "AMD EPYC, 16 cores, torch 2.13.0+cpu"}):
        assert " min " not in table1.verdicts(other)  # no time target for that run


def test_the_recorded_table_holds_what_the_course_draws_from_it_and_states_each_target():
    """benchmarks/table1.json is the full-size run the README, RESULTS.md and notebook 06b report: seven rows in
    ROWS order, each trained with three seeds on 2 CPU cores; both order-blind rows within 50 +- 3 % within pairs
    on the test clips and at exactly 50 % on the clips plus their reversals; every model with a time embedding moved
    by a reversal. The time (30 minutes) and divided attention's accuracy (>= 95 %) are measurements against issue
    20's targets, not pass marks: the README states each with its verdict, from the record."""
    table = json.loads(table1.RECORDED.read_text())
    rows = table["rows"]
    assert [(r["attention_type"], r["time_embed"]) for r in rows] == [
        (kind, kind != "space_only" if te is None else te) for kind, te in table1.ROWS
    ]
    assert table["command"].startswith("python benchmarks/table1.py") and "--record" in table["command"]
    assert "--preset" not in table["command"] and table["recipe"] == " ".join(table1.RECIPES["toy"])
    assert table["seeds"] == [0, 1, 2] and all(r["seeds"] == [0, 1, 2] and set(table1.KEYS) <= set(r) for r in rows)
    assert table["machine"].split(", ")[1] == "2 cores" and table["total_minutes"] > 0
    assert table1.verdicts(table) in table1.README.read_text()
    for r in rows:
        blind = not r["time_embed"]
        assert (r["reversal_change"] < 1e-5) == blind, r
        if blind:
            assert abs(r["within_pair"] - 0.5) <= 0.03 and r["within_pair_reversed"] == 0.5, r
