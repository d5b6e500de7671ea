"""The benchmark entry points on tiny models (seconds), so they do not rot between real runs.

They check what the harness promises (interleaving, medians, the same weights on both sides, the
report format), never a speed: speed targets live in `timesformer-lite bench`, not in tests.
"""

import numpy as np
import torch

import timesformer_lite.bench as bench
from timesformer_lite.config import load_config

CPU = torch.device("cpu")


def tiny() -> bench.ModelConfig:
    return load_config("smoke").model


def test_timing_reports_median_and_deciles():
    t = bench.Timing.of([float(i) for i in range(1, 12)])  # 1 .. 11 s
    assert (t.median, t.p10, t.p90) == (6.0, 2.0, 10.0)
    assert t.rate(12) == "2 (1.2-6)"  # items/s at the median, slow end first


def test_contenders_alternate_and_only_timed_rounds_count():
    calls = []
    timings = bench.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, CPU, 2, 3)
    assert calls == ["a", "b"] * 5
    assert set(timings) == {"a", "b"}
    assert all(t.p10 <= t.median <= t.p90 for t in timings.values())


def test_peer_and_ours_hold_the_same_weights_and_agree():
    hf, ours = bench.hf_and_ours(tiny(), CPU)
    video = bench.random_video(tiny(), 2, CPU, torch.float32)
    with torch.no_grad():
        p = bench.parity(ours.eval(), bench.hf_logits(hf.eval()), video)
    assert p.max_abs <= 1e-5 and p.top1 == 1.0


def test_forward_rows_give_speed_ratio_and_parity():
    speed, diff = bench.bench_forward(tiny(), 2, CPU, torch.float32, warmup=1, reps=3, target=1.25)
    assert speed.ratio > 0 and speed.target == 1.25 and speed.met.startswith(">= 1.25: ")
    assert diff.ratio <= 1e-4 and "top-1 agreement 100 %: yes" in diff.note
    (bf16,) = bench.bench_forward(tiny(), 2, CPU, torch.bfloat16, warmup=0, reps=1, target=None)[1:]
    assert bf16.ratio <= 2e-2


def test_training_rows_step_both_models():
    (row,) = bench.bench_train(tiny(), 4, CPU, torch.float32, warmup=1, reps=2, target=1.25)
    assert row.ratio > 0 and "AdamW" in row.name


def test_mfu_is_achieved_over_measured_peak():
    rows = bench.mfu_rows(tiny(), 2, CPU, torch.float32, warmup=1, reps=2, peak_n=256)
    assert [r.target for r in rows] == [0.45, 0.30]
    assert all(0 < r.ratio < 2 for r in rows)  # a fraction of the matmul speed (tiny models: small)


def test_saved_bytes_counts_each_kept_storage_once_and_no_parameter():
    layer = torch.nn.Linear(8, 8, bias=False)
    video = torch.zeros(4, 8, requires_grad=True)
    assert bench.saved_bytes(layer, lambda v: v.exp(), video, torch.float32) == 4 * 8 * 4  # exp keeps its output
    assert bench.saved_bytes(layer, lambda v: v.exp() * v.exp(), video, torch.float32) == 2 * 4 * 8 * 4
    assert bench.saved_bytes(layer, layer, video, torch.float32) == 4 * 8 * 4  # the input, not the weight
    assert bench.saved_bytes(layer, lambda v: layer(v[:2]) + layer(v[2:]), video, torch.float32) == 4 * 8 * 4


def test_saved_row_puts_ours_on_its_gpu_code_paths_and_restores_them(monkeypatch):
    from timesformer_lite.model import attention

    recompute, seen = attention._recompute_gelu, []

    def kept(model, call, video, dtype):  # ours: 5 MiB a clip and 2 a step; HF: 10 and 3
        seen.append(attention._recompute_gelu(video))
        return (5 * len(video) + 2 if isinstance(model, bench.TimeSformer) else 10 * len(video) + 3) * 2**20

    monkeypatch.setattr(bench, "saved_bytes", kept)
    (row,) = bench.bench_saved(tiny(), torch.bfloat16, CPU)
    assert seen == [True] * 4 and attention._recompute_gelu is recompute  # taken while counting, put back after
    assert (row.ours, row.hf, row.ratio, row.lower_is_better) == ("5", "10", 0.5, True)
    assert "ours 2, HF 3 MiB" in row.note


def test_compiled_contender_is_named_and_computes_the_same_logits():
    speed, diff = bench.bench_forward(
        tiny(), 2, CPU, torch.float32, warmup=1, reps=1, target=None, compile_mode="default"
    )
    assert speed.name == "forward 4x32 D32 depth 2 fp32 batch 2, ours torch.compile(default) (clips/s)"
    assert speed.ratio > 0 and diff.ratio <= 1e-4 and "top-1 agreement 100 %: yes" in diff.note
    (row,) = bench.bench_train(tiny(), 2, CPU, torch.float32, warmup=1, reps=1, target=None, compile_mode="default")
    assert "ours torch.compile(default), AdamW" in row.name and row.ratio > 0


def test_gpu_suite_gives_every_row_of_the_issue(monkeypatch):
    """The whole GPU suite, run on the CPU with a tiny model, so that a GPU session spends its time measuring."""
    rows = bench.gpu_suite(
        tiny(), CPU, torch.bfloat16, 1, 1, 64, None, 2, None, batches=(2, 2, 1, 2), stall_preset="smoke"
    )
    names = [r.name for r in rows]
    assert names == [
        "forward 4x32 D32 depth 2 bf16 batch 2 (clips/s)",
        "logits vs HF, 4x32 D32 depth 2 bf16 batch 2",
        "MFU inference 4x32 D32 depth 2 bf16 batch 2",
        "training step 4x32 D32 depth 2 bf16 batch 2, AdamW (clips/s)",
        "MFU training 4x32 D32 depth 2 bf16 batch 2",
        "forward 4x32 D32 depth 2 bf16 batch 1 (clips/s)",
        "logits vs HF, 4x32 D32 depth 2 bf16 batch 1",
        "logits vs HF, 4x32 D32 depth 2 fp32 batch 2",
        "data stall, smoke preset training bf16 batch 8",
    ]
    targets = {r.name.split(" 4x32")[0]: r.target for r in rows if r.target is not None}
    assert targets == {
        "forward": 1.5,
        "MFU inference": 0.45,
        "training step": 1.3,
        "MFU training": 0.3,
        "data stall, smoke preset training bf16 batch 8": 0.1,
    }
    assert rows[2].note.startswith("0.0 GFLOP/clip, matmul peak") and "(64^3 bf16)" in rows[2].note


def test_data_stall_is_a_fraction_of_step_time():
    (row,) = bench.data_stall("smoke", CPU, torch.float32, steps=2, root=None)
    assert 0 <= row.ratio < 1 and row.lower_is_better and "0 workers (data.num_workers=0)" in row.note


def test_sdpa_backend_names_the_kernel_torch_runs():
    assert bench.sdpa_backend(CPU, torch.float32, 8) == "flash_attention_for_cpu"


def test_cli_appends_a_dated_section_and_keeps_other_sections(tmp_path, monkeypatch, capsys):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Decoding\n\ncolleague's table\n")
    monkeypatch.setattr(bench, "RESULTS", results)
    argv = ["forward", "--preset", "smoke", "--batch", "2", "--warmup", "1", "--reps", "2", "--threads", "1"]
    assert bench.main(argv) == 0
    assert bench.main(argv) == 0
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## Decoding\n\ncolleague's table\n")
    assert text.count(bench.SECTION) == 1 and text.count("| forward 4x32 D32 depth 2 fp32 batch 2 (clips/s) |") == 2
    assert "torch uses 1" in capsys.readouterr().out


def test_state_bytes_counts_weights_and_optimizer_state():
    model = torch.nn.Linear(10, 3)  # 33 fp32 parameters
    opt = torch.optim.AdamW(model.parameters())
    assert bench.state_bytes(model, opt) == 33 * 4
    model(torch.randn(2, 10)).sum().backward()
    opt.step()  # AdamW adds exp_avg and exp_avg_sq per parameter (and a scalar step)
    assert bench.state_bytes(model, opt) == 3 * 33 * 4 + 2 * 4


def test_bench_leaves_the_callers_thread_count_alone():
    import torch

    from timesformer_lite.bench import main

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        main(
            [
                "forward",
                "--preset",
                "smoke",
                "--batch",
                "1",
                "--warmup",
                "0",
                "--reps",
                "1",
                "--threads",
                "1",
                "--no-append",
            ]
        )
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_decode_benchmark_readers_return_the_same_frames(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_decode", bench.REPO / "benchmarks" / "bench_decode.py")
    bench_decode = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_decode)
    for keyint in (250, 16):
        clip = bench_decode.make_clip(tmp_path / f"k{keyint}.mp4", keyint, seconds=2, width=128, height=96)
        for idx in ([0, 7, 14, 21, 28, 35, 42, 49], [20, 21, 22, 30, 31, 40, 41, 49]):
            frames = {name: read(clip, idx) for name, read in bench_decode.READERS.items()}
            assert {f.shape for f in frames.values()} == {(8, 96, 128, 3)}
            for name, f in frames.items():
                assert np.abs(f.astype(int) - frames["decord"].astype(int)).max() <= 1, (keyint, name)
            assert not np.array_equal(frames["decord"][0], frames["decord"][-1])  # a moving scene


def test_results_blocks_land_at_the_end_of_their_own_section(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## A\n\nold a\n\n## B\n\nold b\n")
    bench.append_results("## A", ["### new a", "", "table a"], path=results)
    bench.append_results("## B", ["### new b"], path=results)
    bench.append_results("## C", ["### new c"], intro="about c", path=results)
    expected = "# Benchmark results\n\n## A\n\nold a\n\n### new a\n\ntable a\n\n## B\n\nold b\n\n### new b\n"
    assert results.read_text() == expected + "\n## C\n\nabout c\n\n### new c\n"
