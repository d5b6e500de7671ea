"""benchmarks/table1.py: the paper's Table 1 on toy motions (five schemes, two time-embedding ablations).

The script runs end to end at smoke size (seven one-epoch trainings) and its order test is exact: a model without a
time embedding gives a clip and the clip reversed the same logits, so on the test clips plus their reversals it is
at exactly 50 % within pairs. The recorded full-size run shipped in benchmarks/table1.json meets the issue's targets.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
spec = importlib.util.spec_from_file_location("table1", BENCH / "table1.py")
table1 = importlib.util.module_from_spec(spec)
sys.modules["table1"] = table1  # --jobs 2 pickles its worker function by name (importlib's own recipe)
spec.loader.exec_module(table1)

KEYS = {
    "attention_type",
    "time_embed",
    "params",
    "gflop_8x224",
    "gflop_toy",
    "train_seconds",
    "test_top1",
    "within_pair",
}  # fmt: skip  (the issue's list; rows carry a few more)
SCHEMES = {"divided_space_time", "joint_space_time", "space_only", "sparse_local_global", "axial"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("table1")
    results_md = BENCH / "RESULTS.md"
    before = results_md.read_text()
    rows = table1.main(["--out", str(out), "--preset", "smoke", "--no-append", "--jobs", "2", "train.device=cpu"])
    assert results_md.read_text() == before  # --no-append leaves RESULTS.md alone
    return out, rows


@pytest.mark.slow
def test_smoke_table_writes_seven_rows_with_every_key(smoke):
    out, rows = smoke
    written = json.loads((out / "table1.json").read_text())
    assert written == json.loads(json.dumps(rows))
    assert len(written) == 7 and all(KEYS | {"command", "date"} <= set(r) for r in written)
    assert all(r["jobs"] == 2 for r in written)  # two rows at a time, each in its own process with its log:
    assert all("epoch  1/1" in (out / f"{table1.row_name(*row)}.log").read_text() for row in table1.ROWS)
    assert {r["attention_type"] for r in written} == SCHEMES
    kinds = [(r["attention_type"], r["time_embed"]) for r in written]
    assert ("divided_space_time", False) in kinds and ("space_only", True) in kinds and ("space_only", False) in kinds
    divided = written[0]
    assert divided["attention_type"] == "divided_space_time" and round(divided["gflop_8x224"], 1) == 391.7
    assert all(0 <= r["test_top1"] <= 1 and r["train_seconds"] > 0 and r["params"] > 0 for r in written)
    with_te = [r for r in written if r["attention_type"] == "space_only" and r["time_embed"]][0]
    without = [r for r in written if r["attention_type"] == "space_only" and not r["time_embed"]][0]
    assert with_te["params"] - without["params"] == 4 * 32  # smoke: a (T=4, D=32) time embedding, nothing else


@pytest.mark.slow
def test_models_without_time_embedding_are_exactly_at_chance_on_reversed_clips(smoke):
    _, rows = smoke
    for r in rows:
        if r["time_embed"]:
            assert r["reversal_change"] > 1e-5, r  # reversing a clip moves its logits
        else:
            assert r["reversal_change"] < 1e-5, r  # rounding only
            assert r["within_pair_reversed"] == 0.5, r


def test_append_results_adds_a_block_to_its_own_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## Decoding\n\nold\n")
    table1.append_results(["### first"], path)
    table1.append_results(["### second"], path)
    text = path.read_text()
    assert text.index("## Decoding") < text.index(table1.SECTION) < text.index("### first") < text.index("### second")
    assert text.count(table1.SECTION) == 1 and "old" in text
    assert f"{table1.SECTION}\n\n### first\n\n### second\n" in text


def test_the_recorded_table_has_every_row_and_meets_the_issue_targets():
    """benchmarks/table1.json is the full-size run the README, RESULTS.md and notebook 06b report: seven rows in
    ROWS order, made in <= 20 minutes, divided attention >= 95 % test top-1, the order-blind rows at exactly
    50 % within pairs on clips + reversals, and every model with a time embedding moved by a reversal."""
    rows = json.loads((BENCH / "table1.json").read_text())
    assert [(r["attention_type"], r["time_embed"]) for r in rows] == [
        (kind, kind != "space_only" if te is None else te) for kind, te in table1.ROWS
    ]
    assert all(KEYS | {"command", "date", "recipe"} <= set(r) for r in rows)
    assert rows[0]["command"].startswith("python benchmarks/table1.py") and "--preset" not in rows[0]["command"]
    assert len({(r["command"], r["date"], r["total_minutes"]) for r in rows}) == 1  # one run made them all
    assert 0 < rows[0]["total_minutes"] <= 20
    assert rows[0]["test_top1"] >= 0.95
    for r in rows:
        blind = not r["time_embed"]
        assert (r["reversal_change"] < 1e-5) == blind and (r["within_pair_reversed"] == 0.5 or not blind), r
