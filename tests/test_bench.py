"""The benchmark scripts in benchmarks/ on tiny models (seconds), so they do not rot between real runs.

They check what the harness promises (interleaving, medians, the same weights in every contender, ratios
taken from the measured times, the past commit's model beside this one, the report), never a speed: speed
targets live in `python benchmarks/bench_model.py --suite cpu|gpu`, not in tests.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import baseline  # noqa: E402
import bench_model as bench  # noqa: E402
import results  # noqa: E402

from timesformer_lite.config import load_config  # noqa: E402
from timesformer_lite.train.options import training_options  # noqa: E402

CPU = torch.device("cpu")
MAIN, OLD = bench.BASELINES  # issue 22's "today's main" (with tl.fuse) and issue 13's hand-tuned model
HAS_HISTORY = shutil.which("git") is not None and all(
    subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{c}^{{commit}}"]).returncode == 0
    for c in bench.BASELINES
)


def tiny() -> bench.ModelConfig:
    return load_config("smoke").model


@pytest.fixture
def timings(monkeypatch):
    """Every `interleaved` result of the test, in order, so that rows can be checked against the times."""
    seen, real = [], bench.interleaved

    def recording(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(bench, "interleaved", recording)
    return seen


@pytest.fixture(scope="module")
def past():
    """The baseline commits' packages, or the reason they cannot be had (no git, a shallow clone)."""
    if not HAS_HISTORY:
        pytest.fail(f"tests need the git history holding {', '.join(bench.BASELINES)}: git fetch --unshallow")
    return bench.baseline_of(",".join(bench.BASELINES))


def test_timing_reports_median_and_deciles():
    t = bench.Timing.of([float(i) for i in range(1, 12)])  # 1 .. 11 s
    assert (t.median, t.p10, t.p90) == (6.0, 2.0, 10.0)
    assert t.rate(12) == "2 (1.2-6)"  # items/s at the median, slow end first


def test_contenders_alternate_and_only_timed_rounds_count():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    timings = bench.interleaved(fns, CPU, 2, 3)
    assert calls == ["a", "b", "c"] * 5
    assert set(timings) == {"a", "b", "c"}
    assert all(t.p10 <= t.median <= t.p90 for t in timings.values())


def test_speed_rows_divide_the_medians_and_skip_missing_contenders():
    t = {"a": bench.Timing(2.0, 1.0, 3.0), "b": bench.Timing(3.0, 2.0, 4.0)}
    rows = bench.speed_rows("forward x", t, 4, [("a", "b", 1.25), ("a", "c", None)])
    assert [(r.name, r.ratio, r.this, r.other) for r in rows] == [
        ("forward x: a / b (clips/s)", 1.5, "2 (1.33-4)", "1.33 (1-2)")
    ]
    assert rows[0].met == ">= 1.25: yes" and rows[0].markdown().startswith("| forward x: a / b (clips/s) | 2 (")


def test_peer_and_reference_hold_the_same_weights_and_agree():
    hf, ref = bench.hf_and_reference(tiny(), CPU)
    video = bench.random_video(tiny(), 2, CPU, torch.float32)
    with torch.no_grad():
        p = bench.parity(ref.eval(), bench.hf_logits(hf.eval())(video), video)
    assert p.max_abs <= 1e-5 and p.top1 == 1.0


def test_baseline_commits_are_their_own_packages_with_the_same_logits(past):
    _, ref = bench.hf_and_reference(tiny(), CPU)
    video = bench.random_video(tiny(), 2, CPU, torch.float32)
    names = []
    for commit, package in past:
        assert package.__name__ == f"timesformer_lite_{commit}"
        assert "timesformer_lite" not in package.__file__.split("/")
        old = baseline.baseline_model(package, ref.eval())
        assert type(old).__module__ == f"timesformer_lite_{commit}.model.timesformer" and not old.training
        name, contender = bench.baseline_contender(commit, package, ref.eval())
        names.append(name)
        with torch.no_grad():
            assert (old(video) - ref(video)).abs().max() <= 1e-5
            assert (contender(video) - ref(video)).abs().max() <= 1e-5
        assert baseline.load_package(commit) is package  # unpacked once a process
    assert names == [f"tl.fuse at {MAIN}", f"model of {OLD}"]  # the fused model where the commit has tl.fuse


def test_unknown_baseline_commit_is_skipped_with_the_reason(capsys):
    assert bench.baseline_of("0000000") == []
    assert "skipping the baseline rows of 0000000: baseline 0000000: git archive failed" in capsys.readouterr().err
    with pytest.raises(ValueError, match="give a hash, tag or branch"):
        baseline.load_package("HEAD; rm")


FORWARD = [": tl.fuse(model) / HF", ": reference / HF", f": tl.fuse at {MAIN} / HF", f": model of {OLD} / HF"]
FORWARD += [f": tl.fuse(model) / tl.fuse at {MAIN}", f": tl.fuse(model) / model of {OLD}"]
GEMM = [": tl.fuse(model) / plain {} GEMM 1568x768 @ 768x3072", ": HF / plain {} GEMM 1568x768 @ 768x3072"]


def test_forward_rows_compare_every_contender_and_a_plain_gemm_from_one_run(timings, past):
    targets = {"fused": 1.25, "reference": 1.05, "baseline": 1.0, "gemm": 1.0}
    rows = bench.bench_forward(tiny(), 2, CPU, torch.float32, 1, 3, targets, baselines=past, gemm=True)
    what = "forward 4x32 D32 depth 2 fp32 batch 2"
    assert [(r.name, r.target) for r in rows] == [
        *zip((f"{what}{s} (clips/s)" for s in FORWARD), (1.25, 1.05, None, None, 1.0, 1.0)),
        (f"{what}{GEMM[0].format('fp32')} (GFLOP/s)", 1.0),
        (f"{what}{GEMM[1].format('fp32')} (GFLOP/s)", None),
        ("logits vs HF (max abs diff), 4x32 D32 depth 2 fp32 batch 2", None),
    ]
    (t,) = timings
    assert list(t) == ["HF", "tl.fuse(model)", "reference", f"tl.fuse at {MAIN}", f"model of {OLD}", "plain GEMM"]
    assert rows[0].ratio == t["HF"].median / t["tl.fuse(model)"].median
    assert rows[4].ratio == t[f"tl.fuse at {MAIN}"].median / t["tl.fuse(model)"].median
    assert rows[5].ratio == t[f"model of {OLD}"].median / t["tl.fuse(model)"].median
    flops = bench.model_flops(tiny())
    gemm = 2 * 1568 * 768 * 3072 / t["plain GEMM"].median
    assert rows[6].ratio == pytest.approx(2 * flops / t["tl.fuse(model)"].median / gemm, rel=1e-12)
    parity = rows[-1]
    assert parity.ratio <= 1e-4 and "top-1 agreement 100 %: yes" in parity.note
    assert [f.split(" at ")[0].split(" ")[0] for f in parity.this.split(", ")] == [
        "tl.fuse(model)",
        "reference",
        "tl.fuse",
        "model",
    ]


def test_bf16_rows_run_the_fused_model_in_bf16_against_hf_under_autocast_and_the_fp32_reference(timings):
    targets = {"fused": 1.5, "gemm": 0.6}
    rows = bench.bench_forward(tiny(), 2, CPU, torch.bfloat16, 1, 2, targets, gemm=True)
    what = "forward 4x32 D32 depth 2 bf16 batch 2"
    assert [(r.name, r.target) for r in rows] == [
        (f"{what}: tl.fuse(model) / HF (clips/s)", 1.5),
        (f"{what}: reference / HF (clips/s)", None),
        (f"{what}{GEMM[0].format('bf16')} (GFLOP/s)", 0.6),
        (f"{what}{GEMM[1].format('bf16')} (GFLOP/s)", None),
        ("logits vs the fp32 reference (max abs diff), 4x32 D32 depth 2 bf16 batch 2", None),
    ]
    parity = rows[-1]
    assert 0 < parity.ratio <= 3e-2 and parity.note.startswith("bound 0.03")
    assert [f.split(" ")[0] for f in parity.this.split(", ")] == ["HF", "tl.fuse(model)"]
    seen = []
    fused = bench.fused_call(torch.nn.Identity(), torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        seen.append(fused(torch.zeros(2)).dtype)
    assert seen == [torch.bfloat16]  # the clip cast to bf16, autocast off inside


def test_compiled_reference_is_a_contender_with_the_same_logits():
    rows = bench.bench_forward(tiny(), 2, CPU, torch.float32, 0, 1, {}, compile_mode="default")
    name = "forward 4x32 D32 depth 2 fp32 batch 2: torch.compile(reference, default) / HF (clips/s)"
    assert rows[2].name == name and rows[2].ratio > 0
    assert rows[-1].ratio <= 1e-4 and "torch.compile(reference, default) " in rows[-1].this


def test_training_rows_put_the_reference_with_its_options_against_hf(timings, past):
    rows = bench.bench_train(tiny(), 4, CPU, torch.float32, 1, 2, 1.35, baselines=past)
    what = "training step 4x32 D32 depth 2 fp32 batch 4, AdamW"
    assert [(r.name, r.target) for r in rows] == [
        (f"{what}: reference+options / HF (clips/s)", 1.35),
        (f"{what}: reference / HF (clips/s)", None),
        (f"{what}: model of {MAIN} / HF (clips/s)", None),
        (f"{what}: model of {OLD} / HF (clips/s)", None),
        (f"{what}: reference+options / model of {MAIN} (clips/s)", None),
        (f"{what}: reference+options / model of {OLD} (clips/s)", None),
    ]
    (t,) = timings
    assert rows[0].ratio == t["HF"].median / t["reference+options"].median
    assert rows[0].note == ", ".join(f"{k}={v}" for k, v in training_options(CPU).items())


def test_training_contenders_are_separate_copies_of_one_set_of_weights(past):
    models = bench.training_contenders(tiny(), CPU, None, past)
    assert list(models) == ["HF", "reference+options", "reference", f"model of {MAIN}", f"model of {OLD}"]
    ours = [models[k] for k in ("reference+options", "reference", f"model of {MAIN}", f"model of {OLD}")]
    first, *others = (m.state_dict() for m in ours)
    assert all(torch.equal(first[k], other[k]) for other in others for k in first)
    assert len({p.data_ptr() for m in ours for p in m.parameters()}) == 4 * len(first)  # nothing shared
    assert all(m.training for m in models.values())
    assert models["reference+options"].cfg.class_token_only is True  # built with the CPU trainer's options


def test_mfu_is_achieved_over_measured_peak():
    rows = bench.mfu_rows(tiny(), 2, CPU, torch.float32, warmup=1, reps=2, peak_n=256)
    assert [r.target for r in rows] == [0.45, 0.30]
    assert rows[0].name.startswith("MFU inference tl.fuse(model), forward")
    assert rows[1].name.startswith("MFU training reference+options, training step")
    assert all(0 < r.ratio < 2 for r in rows)  # a fraction of the matmul speed (tiny models: small)


def test_saved_bytes_counts_each_kept_storage_once_and_no_parameter():
    layer = torch.nn.Linear(8, 8, bias=False)
    video = torch.zeros(4, 8, requires_grad=True)
    assert bench.saved_bytes(layer, lambda v: v.exp(), video, torch.float32) == 4 * 8 * 4  # exp keeps its output
    assert bench.saved_bytes(layer, lambda v: v.exp() * v.exp(), video, torch.float32) == 2 * 4 * 8 * 4
    assert bench.saved_bytes(layer, layer, video, torch.float32) == 4 * 8 * 4  # the input, not the weight
    assert bench.saved_bytes(layer, lambda v: layer(v[:2]) + layer(v[2:]), video, torch.float32) == 4 * 8 * 4


def test_saved_row_counts_the_reference_with_the_gpu_training_options(monkeypatch):
    seen = []

    def kept(model, call, video, dtype):  # ours: 5 MiB a clip and 2 a step; HF: 10 and 3
        ours = isinstance(model, bench.TimeSformer)
        seen.append(ours and model.blocks[0].mlp.recompute_gelu)
        return (5 * len(video) + 2 if ours else 10 * len(video) + 3) * 2**20

    monkeypatch.setattr(bench, "saved_bytes", kept)
    (row,) = bench.bench_saved(tiny(), torch.bfloat16, CPU)
    assert seen == [True, True, False, False]  # ours recomputes GELU, as a GPU trainer sets it
    assert (row.this, row.other, row.ratio, row.lower_is_better) == ("5", "10", 0.5, True)
    assert row.note.startswith("plus once a step: ours 2, HF 3 MiB; fused_attn=True")


@pytest.mark.parametrize("bf16", [True, False], ids=["native bf16", "no native bf16"])
def test_cpu_suite_gives_every_row_of_the_issues(past, bf16, capsys):
    rows = bench.cpu_suite(1, 1, None, past, CPU, base=tiny(), toy=(tiny(), 4), bf16=bf16)
    f1, f4 = "forward 4x32 D32 depth 2 fp32 batch 1", "forward 4x32 D32 depth 2 fp32 batch 4"
    b1, b4 = "forward 4x32 D32 depth 2 bf16 batch 1", "forward 4x32 D32 depth 2 bf16 batch 4"
    t = "training step 4x32 D32 depth 2 fp32 batch 4, AdamW"

    def forward(what, dtype):
        names = [f"{what}{s} (clips/s)" for s in FORWARD] + [f"{what}{g.format(dtype)} (GFLOP/s)" for g in GEMM]
        against = "HF" if dtype == "fp32" else "the fp32 reference"
        return [*names, f"logits vs {against} (max abs diff), {what.removeprefix('forward ')}"]

    bf16_rows = forward(b1, "bf16") + forward(b4, "bf16") if bf16 else [
        "logits vs the fp32 reference (max abs diff), 4x32 D32 depth 2 bf16 batch 1"
    ]  # fmt: skip
    assert [r.name for r in rows] == [
        *forward(f1, "fp32"),
        *forward(f4, "fp32"),
        *bf16_rows,
        *(t + s + " (clips/s)" for s in (": reference+options / HF", ": reference / HF")),
        *(f"{t}: model of {c} / HF (clips/s)" for c in (MAIN, OLD)),
        *(f"{t}: reference+options / model of {c} (clips/s)" for c in (MAIN, OLD)),
        "tensors kept for backward per clip, training 4x32 D32 depth 2 bf16: reference+options(cuda) / HF (MiB)",
    ]
    targets = {r.name: r.target for r in rows}
    assert [targets[f"{f1}{s} (clips/s)"] for s in FORWARD] == [1.25, 1.05, None, None, 1.0, 1.0]
    assert targets[f"{f4}{GEMM[0].format('fp32')} (GFLOP/s)"] == 1.0
    assert targets[f"{t}: reference+options / HF (clips/s)"] == 1.35
    if bf16:
        assert targets[f"{b4}: tl.fuse(model) / HF (clips/s)"] == 1.5
        assert targets[f"{b1}{GEMM[0].format('bf16')} (GFLOP/s)"] == 0.6
    else:
        assert "skipping the bf16 speed rows: this CPU has no native bf16" in capsys.readouterr().err
    parity16 = next(r for r in rows if r.name.startswith("logits vs the fp32 reference"))
    assert parity16.ratio <= 3e-2 and "top-1 agreement 100 %: yes" in parity16.note


def test_gpu_suite_gives_every_row_of_the_issue():
    """The whole GPU suite, run on the CPU with a tiny model, so that a GPU session spends its time measuring."""
    rows = bench.gpu_suite(
        tiny(), CPU, torch.bfloat16, 1, 1, 64, None, [], 2, None, batches=(2, 2, 1, 2), stall_preset="smoke"
    )
    what = "4x32 D32 depth 2 bf16 batch"
    assert [r.name for r in rows] == [
        f"forward {what} 2: tl.fuse(model) / HF (clips/s)",
        f"forward {what} 2: reference / HF (clips/s)",
        f"logits vs the fp32 reference (max abs diff), {what} 2",
        f"MFU inference tl.fuse(model), forward {what} 2",
        f"training step {what} 2, AdamW: reference+options / HF (clips/s)",
        f"training step {what} 2, AdamW: reference / HF (clips/s)",
        f"MFU training reference+options, training step {what} 2, AdamW",
        f"forward {what} 1: tl.fuse(model) / HF (clips/s)",
        f"forward {what} 1: reference / HF (clips/s)",
        f"logits vs the fp32 reference (max abs diff), {what} 1",
        "logits vs HF (max abs diff), 4x32 D32 depth 2 fp32 batch 2",
        "data stall, smoke preset training bf16 batch 8",
    ]
    assert [r.target for r in rows] == [1.5, None, None, 0.45, 1.3, None, 0.3, None, None, None, None, 0.1]
    assert rows[3].note.startswith("0.0 GFLOP/clip, matmul peak") and "(64^3 bf16)" in rows[3].note


def test_data_stall_is_a_fraction_of_step_time():
    (row,) = bench.data_stall("smoke", CPU, torch.float32, steps=2, root=None)
    assert 0 <= row.ratio < 1 and row.lower_is_better and "0 workers (data.num_workers=0)" in row.note


def test_sdpa_backend_names_the_kernel_torch_runs():
    assert bench.sdpa_backend(CPU, torch.float32, 8) == "flash_attention_for_cpu"


def test_script_appends_a_dated_section_and_keeps_other_sections(tmp_path, monkeypatch, capsys):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## Decoding\n\ncolleague's table\n")
    monkeypatch.setattr(results, "RESULTS", path)
    argv = ["forward", "--preset", "smoke", "--batch", "2", "--warmup", "0", "--reps", "1", "--threads", "1"]
    assert bench.main([*argv, "--baseline", "none", "--note", "Two engineers shared the cores."]) == 0
    assert bench.main([*argv, "--baseline", "none"]) == 0
    text = path.read_text()
    assert text.startswith("# Benchmark results\n\n## Decoding\n\ncolleague's table\n")
    assert text.count(bench.SECTION) == 1
    assert text.count("| forward 4x32 D32 depth 2 fp32 batch 2: tl.fuse(model) / HF (clips/s) |") == 2
    assert text.count("`python benchmarks/bench_model.py forward --preset smoke") == 2
    assert "load average" in text and ". Two engineers shared the cores.\n" in text
    assert "torch uses 1" in capsys.readouterr().out


def suite_rows() -> list:
    """A CPU suite's rows as `cpu_suite` names them, with made-up ratios: two batch sizes, a training row,
    rows with and without targets."""
    f, b = "forward 8x224 D768 depth 12 fp32 batch {}", "forward 8x224 D768 depth 12 bf16 batch {}"
    gemm = ": HF / plain bf16 GEMM 1568x768 @ 768x3072 (GFLOP/s)"
    return [
        bench.Row(f.format(1) + ": tl.fuse(model) / HF (clips/s)", "0.53", "0.23", 2.35, 1.25),
        bench.Row(f.format(1) + ": reference / HF (clips/s)", "0.24", "0.23", 1.07),
        bench.Row(f.format(4) + ": tl.fuse(model) / HF (clips/s)", "0.53", "0.22", 2.47, 1.25),
        bench.Row(b.format(1) + ": tl.fuse(model) / HF (clips/s)", "1.01", "0.85", 1.19, 1.5),
        bench.Row(b.format(1) + gemm, "332", "367", 0.905),
        bench.Row(
            "training step 8x32 D64 depth 2 fp32 batch 32, AdamW: reference+options / HF (clips/s)",
            "612",
            "421",
            1.45,
            1.35,
        ),
    ]


def test_the_recorded_suite_is_the_readme_table_of_its_targets(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# readme\n\n" + "\n".join(results.block_marks("speed_cpu")) + "\n\nafter\n")
    command = "python benchmarks/bench_model.py --suite cpu --threads 1 --record"
    bench.record(suite_rows(), command, "CPU X; torch 2.13", "quiet", tmp_path / "speed.json", readme)
    record = json.loads((tmp_path / "speed.json").read_text())
    assert record["command"] == command and record["machine"] == "CPU X; torch 2.13" and len(record["rows"]) == 6
    rows = [bench.Row(**row) for row in record["rows"]]  # every row kept as printed; verdicts derived again
    assert rows == suite_rows() and rows[0].met == ">= 1.25: yes" and rows[3].met == ">= 1.5: NO"
    lines = results.read_block(readme.read_text(), "speed_cpu")
    assert lines == bench.readme_lines(record) and readme.read_text().endswith("\n\nafter\n")
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| row | batch 1 | batch 4 | batch 32 |"
    assert table[2:] == [  # the rows with a target and the peer's GFLOP/s beside the GEMM; one column per batch
        "| forward 8x224 D768 depth 12 fp32: tl.fuse(model) / HF (clips/s) | 2.35 (>= 1.25: yes) | "
        "2.47 (>= 1.25: yes) |  |",
        "| forward 8x224 D768 depth 12 bf16: tl.fuse(model) / HF (clips/s) | 1.19 (>= 1.5: NO) |  |  |",
        "| forward 8x224 D768 depth 12 bf16: HF / plain bf16 GEMM 1568x768 @ 768x3072 (GFLOP/s) | 0.905 |  |  |",
        "| training step 8x32 D64 depth 2 fp32, AdamW: reference+options / HF (clips/s) |  |  | 1.45 (>= 1.35: yes) |",
    ]
    assert lines[-1] == (
        "Targets met: 3 of 4; missed: forward 8x224 D768 depth 12 bf16 batch 1: tl.fuse(model) / HF (clips/s) "
        "1.19 (>= 1.5)."
    )


def test_record_is_for_the_whole_cpu_suite():
    for argv in (
        ["forward", "--record"],
        ["--suite", "gpu", "--record"],
        ["--suite", "cpu", "--record", "--no-append"],
    ):
        with pytest.raises(SystemExit):
            bench.parse(argv)
    assert bench.parse(["--suite", "cpu", "--record"]).record


def test_script_leaves_the_callers_thread_count_alone():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        argv = ["saved", "--preset", "smoke", "--threads", "1", "--baseline", "none", "--no-append"]
        assert bench.main(argv) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_package_holds_no_benchmark():
    """A wheel has no benchmarks/ folder and need not have transformers: the benchmarks live beside it."""
    assert importlib.util.find_spec("timesformer_lite.bench") is None
    from timesformer_lite.cli import COMMANDS

    assert "bench" not in COMMANDS


def test_state_bytes_counts_weights_and_optimizer_state():
    model = torch.nn.Linear(10, 3)  # 33 fp32 parameters
    opt = torch.optim.AdamW(model.parameters())
    assert bench.state_bytes(model, opt) == 33 * 4
    model(torch.randn(2, 10)).sum().backward()
    opt.step()  # AdamW adds exp_avg and exp_avg_sq per parameter (and a scalar step)
    assert bench.state_bytes(model, opt) == 3 * 33 * 4 + 2 * 4


def test_decode_benchmark_readers_return_the_same_frames(tmp_path):
    import bench_decode  # benchmarks/ is on the path (above)

    for keyint in (250, 16):
        clip = bench_decode.make_clip(tmp_path / f"k{keyint}.mp4", keyint, seconds=2, width=128, height=96)
        for idx in ([0, 7, 14, 21, 28, 35, 42, 49], [20, 21, 22, 30, 31, 40, 41, 49]):
            frames = {name: read(clip, idx) for name, read in bench_decode.READERS.items()}
            assert {f.shape for f in frames.values()} == {(8, 96, 128, 3)}
            for name, f in frames.items():
                assert np.abs(f.astype(int) - frames["decord"].astype(int)).max() <= 1, (keyint, name)
            assert not np.array_equal(frames["decord"][0], frames["decord"][-1])  # a moving scene


def test_results_blocks_land_at_the_end_of_their_own_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n## A\n\nold a\n\n## B\n\nold b\n")
    results.append_results("## A", ["### new a", "", "table a"], path=path)
    results.append_results("## B", ["### new b"], path=path)
    results.append_results("## C", ["### new c"], intro="about c", path=path)
    expected = "# Benchmark results\n\n## A\n\nold a\n\n### new a\n\ntable a\n\n## B\n\nold b\n\n### new b\n"
    assert path.read_text() == expected + "\n## C\n\nabout c\n\n### new c\n"
