"""tl.fuse: an inference-only copy with the reference model's logits, that leaves the reference untouched.

Speed is measured by the benchmarks (benchmarks/RESULTS.md), never here; these tests pin the numbers.
"""

import functools
import importlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from data_fixtures import pattern_frames, write_video

import timesformer_lite as tl
from timesformer_lite.export import export_model
from timesformer_lite.fuse import FusedTimeSformer, Linear, has_onednn_linear
from timesformer_lite.predict import predict
from timesformer_lite.train import evaluate
from timesformer_lite.train.evaluate import test_protocol as run_test_protocol

# the modules, not the functions `tl.predict` and `tl.fuse` that share their names
predict_module = importlib.import_module("timesformer_lite.predict")
fuse_module = importlib.import_module("timesformer_lite.fuse")
SCHEMES = ["divided_space_time", "joint_space_time", "space_only", "sparse_local_global", "axial"]
WITH_FC = ["divided_space_time", "sparse_local_global", "axial"]  # the schemes with added steps (`*_fc`)
GEMMS = ["torch", *(["onednn"] if has_onednn_linear() else [])]
# (B, T, H, W): the config's size; fewer frames and other sizes (interpolated); an odd 5 x 3 grid; odd T
SIZES = [(2, 4, 32, 32), (3, 2, 40, 24), (1, 3, 24, 40), (2, 6, 16, 16)]


def tiny(attention_type: str = "divided_space_time", dtype: torch.dtype = torch.float32) -> tl.TimeSformer:
    """A seeded tiny model whose added steps count (their `*_fc` start at zero, which would fold trivially)."""
    torch.manual_seed(0)
    cfg = tl.ModelConfig(
        img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=3, num_heads=2, num_classes=5,
        attention_type=attention_type, drop_path_rate=0.0, init_std=0.2,
    )  # fmt: skip
    model = tl.TimeSformer(cfg).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "_fc" in name:
                p.normal_(0, 0.2)
    return model


def reference_logits(model: tl.TimeSformer, video: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(video)


@pytest.mark.parametrize("gemm", GEMMS)
@pytest.mark.parametrize("attention_type", SCHEMES)
def test_fused_logits_equal_the_reference_in_float64_and_float32(attention_type, gemm):
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        model = tiny(attention_type, dtype)
        fused = tl.fuse(model, gemm=gemm)
        for B, T, H, W in SIZES:
            video = torch.randn(B, T, 3, H, W, dtype=dtype)
            expected = reference_logits(model, video)
            assert expected.abs().max() > 0.1  # non-trivial logits at init_std 0.2
            with torch.inference_mode():
                got = fused(video)
            with torch.no_grad():
                got_no_grad = fused(video)
            assert got.dtype == dtype and got.shape == (B, 5)
            torch.testing.assert_close(got, expected, atol=tolerance, rtol=0)
            torch.testing.assert_close(got_no_grad, expected, atol=tolerance, rtol=0)
        torch.testing.assert_close(fused(video), expected, atol=tolerance, rtol=0)  # plain grad mode too


@pytest.mark.parametrize("attention_type", ["divided_space_time", "space_only"])
def test_a_batch_that_outgrows_the_cache_runs_clip_by_clip_with_the_same_logits(attention_type):
    model = tiny(attention_type, torch.float64)
    fused = tl.fuse(model)
    video = torch.randn(5, 4, 3, 32, 32, dtype=torch.float64)
    passes = []
    fused.shell.patch_embed.register_forward_hook(lambda m, args, out: passes.append(args[0].shape[0]))
    whole = fused(video)
    per_clip = 4 * 16 * fused.blocks[0].mlp.fc1.out_features * 8  # tokens x MLP width x 8 bytes
    fused.cache_bytes = 2 * per_clip
    assert fused.clips_per_pass(video) == 2
    split = fused(video)
    assert passes == [5, 2, 2, 1]
    torch.testing.assert_close(split, reference_logits(model, video), atol=1e-10, rtol=0)
    torch.testing.assert_close(split, whole, atol=1e-12, rtol=0)
    assert tl.fuse(model, split_batches=False).clips_per_pass(video) == 5


def gradients(model: tl.TimeSformer, video: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    F.cross_entropy(model(video), torch.arange(len(video)) % 5).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_fusing_leaves_the_reference_its_weights_grads_and_mode_and_later_training_leaves_the_copy():
    model = tiny().train()
    video = torch.randn(2, 4, 3, 32, 32)
    grads = gradients(model, video)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = tl.fuse(model)
    with torch.inference_mode():
        fused_logits = fused(video)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(grads[n], p.grad) for n, p in model.named_parameters())
    reference = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert not reference & {t.untyped_storage().data_ptr() for t in fused.state_dict().values()}  # copies
    torch.optim.SGD(model.parameters(), lr=1.0).step()  # a training step of the reference
    assert not torch.equal(model.state_dict()["blocks.0.temporal_fc.weight"], before["blocks.0.temporal_fc.weight"])
    with torch.inference_mode():
        torch.testing.assert_close(fused(video), fused_logits, atol=0, rtol=0)
        model.eval()
        assert (model(video) - fused_logits).abs().max() > 1e-3  # the reference moved, its copy did not


def test_asking_for_maps_or_training_is_a_clear_error():
    model = tiny()
    fused = tl.fuse(model)
    video = torch.randn(1, 4, 3, 32, 32)
    with pytest.raises(ValueError, match=r"ask the reference model .*model\(video, return_attention=True\)"):
        fused(video, return_attention=True)
    with pytest.raises(RuntimeError, match=r"inference-only: train the reference model, then tl.fuse\(model\)"):
        fused.train()
    assert fused.eval() is fused and not any(m.training for m in fused.modules())
    assert not any(p.requires_grad for p in fused.parameters())
    with pytest.raises(ValueError, match="expected a video of shape"):  # the reference's own input checks
        fused(video[0])
    with pytest.raises(TypeError, match="tl.fuse takes a TimeSformer, got Linear"):
        tl.fuse(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="gemm='mkl' is not one of auto, torch, onednn"):
        tl.fuse(model, gemm="mkl")
    assert tl.fuse(fused) is fused  # already fused


def test_auto_gemm_is_timed_once_per_shape_set_so_every_fusion_gives_the_same_numbers(monkeypatch):
    calls = []
    timed = fuse_module.faster_gemm.__wrapped__
    monkeypatch.setattr(fuse_module, "faster_gemm", functools.cache(lambda *a: calls.append(a) or timed(*a)))
    model = tiny()
    first, second = tl.fuse(model), tl.fuse(model)
    assert calls == [(64, 32, 128, True)] and first.gemm == second.gemm in GEMMS  # (tokens, D, MLP width, bias)
    video = torch.randn(2, 4, 3, 32, 32)
    assert torch.equal(first(video), second(video))


def test_the_fused_model_keeps_the_source_models_metadata():
    model = tiny()
    model.classes, model.run_config = ["a", "b", "c", "d", "e"], tl.load_config("smoke")
    fused = tl.fuse(model)
    assert fused.classes == model.classes and fused.run_config == model.run_config and fused.cfg == model.cfg
    assert fused.load_report is None and fused.gemm in GEMMS


@pytest.mark.parametrize("attention_type", WITH_FC)
def test_each_added_fc_is_folded_into_proj_as_one_real_linear(attention_type):
    model = tiny(attention_type, torch.float64)
    fused = tl.fuse(model)
    for ref_block, block in zip(model.blocks, fused.blocks, strict=True):
        assert not any(name.endswith("fc") and "mlp" not in name for name, _ in block.named_children())
        for step in ref_block.steps:
            attn = getattr(ref_block, f"{step.prefix}attn")
            proj = getattr(block, f"{step.prefix}attn").proj
            assert type(proj) is Linear and isinstance(proj, torch.nn.Linear)
            if step.with_cls:
                assert torch.equal(proj.weight, attn.proj.weight) and torch.equal(proj.bias, attn.proj.bias)
                continue
            fc = getattr(ref_block, f"{step.prefix}fc")
            torch.testing.assert_close(proj.weight, fc.weight @ attn.proj.weight, atol=1e-14, rtol=0)
            torch.testing.assert_close(proj.bias, fc.weight @ attn.proj.bias + fc.bias, atol=1e-14, rtol=0)
    n_fc = sum(p.numel() for n, p in model.named_parameters() if "_fc" in n)
    assert n_fc > 0 and sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in model.parameters()) - n_fc


def test_the_last_block_computes_the_class_token_alone_without_keys_or_values():
    model = tiny(dtype=torch.float64)
    fused = tl.fuse(model)
    seen = {}
    for name in ("mlp", "attn"):
        module = getattr(fused.blocks[-1], name)
        module.register_forward_hook(lambda m, args, out, name=name: seen.setdefault(name, args[0].shape) and None)
    fused.blocks[0].mlp.register_forward_hook(lambda m, args, out: seen.setdefault("first mlp", args[0].shape) and None)
    fused(torch.randn(2, 4, 3, 32, 32, dtype=torch.float64))
    assert seen == {"first mlp": (2, 4, 16, 32), "mlp": (2, 32)}  # the last MLP saw the class tokens alone
    attn = fused.blocks[-1].attn
    x = torch.randn(3, 17, 32, dtype=torch.float64)
    torch.testing.assert_close(attn.first_query(x), attn(x)[:, 0], atol=1e-12, rtol=0)


def test_onednn_runs_fp32_cpu_linears_only_and_plain_ops_everywhere_else():
    model = tiny()
    if not has_onednn_linear():  # a torch build without oneDNN: asking for it is a clear error
        with pytest.raises(ValueError, match="no mkldnn._linear_pointwise; use gemm='torch'"):
            tl.fuse(model, gemm="onednn")
        return
    fused = tl.fuse(model, gemm="onednn")
    assert fused.gemm == "onednn" and tl.fuse(model, gemm="torch").gemm == "torch"
    video = torch.randn(2, 4, 3, 32, 32)

    def ops(f) -> dict[str, int]:
        with torch.profiler.profile() as prof:
            f()
        names = [e.name for e in prof.events()]
        return {op: names.count(op) for op in ("mkldnn::_linear_pointwise", "aten::linear")}

    with torch.inference_mode():
        counts = ops(lambda: fused(video))
        assert counts["aten::linear"] == 2 and counts["mkldnn::_linear_pointwise"] > 0  # F.linear: q and head
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert ops(lambda: fused(video))["mkldnn::_linear_pointwise"] == 0
        double = tl.fuse(model.double(), gemm="onednn")
        assert ops(lambda: double(video.double()))["mkldnn::_linear_pointwise"] == 0


@pytest.mark.parametrize("gemm", GEMMS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("shape", [(5, 16), (3, 7, 16), (2, 3, 4, 16)])
def test_the_fused_linear_equals_the_plain_ops_on_any_layout(shape, gelu, bias, gemm):
    torch.manual_seed(0)
    layer = fuse_module.copy_linear(torch.nn.Linear(16, 24, bias=bias))
    layer.onednn = gemm == "onednn"
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = F.linear(x, layer.weight, layer.bias)
        expected = F.gelu(expected) if gelu else expected
        got, strided = layer(x, gelu=gelu), layer(x[::2], gelu=gelu)  # a view with gaps
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(strided, expected[::2], atol=1e-5, rtol=1e-5)


def test_under_bf16_autocast_the_fused_model_stays_near_the_reference():
    model = tiny()
    fused = tl.fuse(model)
    video = torch.randn(2, 4, 3, 32, 32)
    expected = reference_logits(model, video)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = fused(video)
        reference_bf16 = model(video)
    assert got.dtype == reference_bf16.dtype
    error, reference_error = (got.float() - expected).abs().max(), (reference_bf16.float() - expected).abs().max()
    assert 0 < error < 1e-1 and error < 2 * reference_error  # bf16 rounding, no worse than the reference's own


def test_predict_scores_with_the_fused_model_and_gives_the_references_numbers(tmp_path, monkeypatch):
    model = tiny()
    model.classes = [f"c{k}" for k in range(5)]
    write_video(tmp_path / "a.mp4", pattern_frames(12, 40, 32, seed=0))
    made = []
    monkeypatch.setattr(predict_module, "fuse", lambda m: made.append(tl.fuse(m)) or made[-1])
    got = predict(tmp_path / "a.mp4", model, top_k=5, views="1x3")
    assert len(made) == 1 and isinstance(made[0], FusedTimeSformer)
    calls = []
    made[0].register_forward_hook(lambda m, args, out: calls.append(out))
    monkeypatch.setattr(predict_module, "fuse", lambda m: made[0])
    predict(tmp_path / "a.mp4", model, top_k=5, views="1x3")
    assert len(calls) == 1  # the views were scored by the fused model
    monkeypatch.setattr(predict_module, "fuse", lambda m: model)  # score with the reference instead
    expected = predict(tmp_path / "a.mp4", model, top_k=5, views="1x3")
    assert [label for label, _ in got] == [label for label, _ in expected]
    for (_, p), (_, q) in zip(got, expected, strict=True):
        assert abs(p - q) < 1e-6


def test_the_test_protocol_scores_with_the_fused_model(tmp_path, monkeypatch):
    from timesformer_lite.data import build_dataset, build_loader

    cfg = tl.load_config("smoke", [f"data.root={tmp_path / 'toy'}", "data.toy_per_class=2", "data.num_crops=3"])
    torch.manual_seed(0)
    model = tl.TimeSformer(cfg.model).eval()
    made = []
    monkeypatch.setattr(fuse_module, "fuse", lambda m: made.append(tl.fuse(m)) or made[-1])
    result, _ = run_test_protocol(model, cfg, torch.device("cpu"), tmp_path / "report")
    assert len(made) == 1
    loader = build_loader(build_dataset(cfg, "test"), 4, shuffle=False, num_workers=0, seed=0)
    expected = evaluate(model, loader, device=torch.device("cpu"), num_classes=cfg.model.num_classes)
    torch.testing.assert_close(result.scores, expected.scores, atol=1e-5, rtol=0)


def test_export_traces_the_fused_model_in_plain_ops(tmp_path):
    model = tiny()
    report = export_model(model, tmp_path / "m.pt", "torchscript")
    assert max(report.max_abs_diff.values()) <= 1e-5  # checked against the reference model
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=Warning)
        loaded = torch.jit.load(str(tmp_path / "m.pt"))
    names = {n for n, _ in loaded.named_parameters()}
    assert "shell.pos_embed" in names and not any("_fc" in n for n in names)  # the folded graph
    assert "mkldnn" not in loaded.inlined_graph.str()
