"""tl.fuse: an inference-only copy with the reference model's logits, that leaves the reference untouched.

Speed is measured by the benchmarks (benchmarks/RESULTS.md), never here; these tests pin the numbers and the
choices `fuse` makes once.
"""

import importlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from data_fixtures import pattern_frames, write_video

import timesformer_lite as tl
from timesformer_lite.export import export_model
from timesformer_lite.fuse import FusedTimeSformer, OneDnnLinear, has_onednn_linear, native_bf16
from timesformer_lite.model.attention import ClassAttention
from timesformer_lite.predict import predict
from timesformer_lite.train import evaluate
from timesformer_lite.train.protocol import test_protocol as run_test_protocol

# the modules, not the functions `tl.predict` and `tl.fuse` that share their names
predict_module = importlib.import_module("timesformer_lite.predict")
fuse_module = importlib.import_module("timesformer_lite.fuse")
gemm_module = importlib.import_module("timesformer_lite.fuse.gemm")
SCHEMES = ["divided_space_time", "joint_space_time", "space_only", "sparse_local_global", "axial"]
WITH_FC = ["divided_space_time", "sparse_local_global", "axial"]  # the schemes with added steps (`*_fc`)
GEMMS = ["torch", *(["onednn"] if has_onednn_linear() else [])]
# (B, T, H, W): the config's size; fewer frames and other sizes (interpolated); an odd 5 x 3 grid; odd T
SIZES = [(2, 4, 32, 32), (3, 2, 40, 24), (1, 3, 24, 40), (2, 6, 16, 16)]


def tiny(attention_type: str = "divided_space_time", dtype: torch.dtype = torch.float32, std: float = 0.2):
    """A seeded tiny model whose added steps count (their `*_fc` start at zero, which would fold trivially)."""
    torch.manual_seed(0)
    cfg = tl.ModelConfig(
        img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=3, num_heads=2, num_classes=5,
        attention_type=attention_type, drop_path_rate=0.0, init_std=std,
    )  # fmt: skip
    model = tl.TimeSformer(cfg).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "_fc" in name or name == "time_embed":
                p.normal_(0, std)
    return model


def reference_logits(model: tl.TimeSformer, video: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(video)


@pytest.mark.parametrize("gemm", GEMMS)
@pytest.mark.parametrize("attention_type", SCHEMES)
def test_fused_logits_equal_the_reference_in_float64_and_float32(attention_type, gemm):
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        model = tiny(attention_type, dtype)
        fused = tl.fuse(model, gemm=gemm if dtype == torch.float32 else "auto")
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


@pytest.mark.parametrize("attention_type", SCHEMES)
def test_a_batch_of_no_clips_gives_no_logits_in_the_reference_and_the_fused_model(attention_type):
    model = tiny(attention_type)
    empty = torch.randn(0, 4, 3, 32, 32)
    with torch.no_grad():
        logits, maps = model(empty, return_attention=True)
    assert logits.shape == (0, 5) and model(empty).shape == (0, 5) and len(maps) == 3
    assert all(layer.shape[0] == 0 for name in ("space", "time", "joint", "sparse") for layer in getattr(maps, name))
    for dtype in (torch.float32, torch.bfloat16):
        fused = tl.fuse(model, dtype=dtype)
        got = fused(empty.to(dtype))
        assert got.shape == (0, 5) and got.dtype == dtype


@pytest.mark.parametrize("attention_type", SCHEMES)
def test_bf16_fused_logits_stay_within_3e_2_of_the_fp32_reference(attention_type):
    model = tiny(attention_type, std=0.02)  # the default init's scale, as trained and benchmarked models have
    fused = tl.fuse(model, dtype=torch.bfloat16)
    assert fused.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in fused.parameters())
    video = torch.randn(4, 4, 3, 32, 32)
    expected = reference_logits(model, video)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_error = (model(video).float() - expected).abs().max()
    error = (fused(video.bfloat16()).float() - expected).abs().max()
    assert 0 < error <= 3e-2 and error <= 3 * autocast_error  # bf16 rounding, of the reference's own order


def test_a_batch_that_outgrows_the_cache_passes_a_few_clips_at_a_time_with_the_same_logits():
    model = tiny(dtype=torch.float64)
    fused = tl.fuse(model)
    hidden = fused.blocks[0].mlp.fc1.out_features
    assert fused.tokens_per_pass == fuse_module.CACHE_BYTES // (hidden * 8)  # float64: 8 bytes
    video = torch.randn(5, 4, 3, 32, 32, dtype=torch.float64)
    passes = []
    fused.patch_embed.register_forward_hook(lambda m, args, out: passes.append(args[0].shape[0]))
    whole = fused(video)
    fused.tokens_per_pass = 2 * 4 * 16 + 3  # two clips of 4 frames x 16 patches, not three
    split = fused(video)
    assert passes == [5, 2, 2, 1]
    torch.testing.assert_close(split, reference_logits(model, video), atol=1e-10, rtol=0)
    torch.testing.assert_close(split, whole, atol=1e-12, rtol=0)
    assert tl.fuse(model, split_batches=False).tokens_per_pass is None
    assert fuse_module.tokens_per_pass(torch.device("cuda"), torch.bfloat16, hidden) is None  # a GPU: whole batch


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
    assert type(model.blocks[-1].attn) is not ClassAttention and isinstance(
        model.blocks[0].temporal_fc, torch.nn.Linear
    )
    reference = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert not reference & {t.untyped_storage().data_ptr() for t in fused.state_dict().values()}  # copies
    torch.optim.SGD(model.parameters(), lr=1.0).step()  # a training step of the reference
    assert not torch.equal(model.state_dict()["blocks.0.temporal_fc.weight"], before["blocks.0.temporal_fc.weight"])
    with torch.inference_mode():
        torch.testing.assert_close(fused(video), fused_logits, atol=0, rtol=0)
        model.eval()
        assert (model(video) - fused_logits).abs().max() > 1e-3  # the reference moved, its copy did not


def test_asking_for_maps_training_or_a_wrong_argument_is_a_clear_error():
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
    with pytest.raises(TypeError, match="tl.fuse takes a reference TimeSformer, got Linear"):
        tl.fuse(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="gemm='mkl' is not one of auto, torch, onednn"):
        tl.fuse(model, gemm="mkl")
    with pytest.raises(ValueError, match="dtype=torch.int8 is not one of torch.float32"):
        tl.fuse(model, dtype=torch.int8)
    with pytest.raises(ValueError, match="gemm='onednn' needs a CPU model in fp32 or bf16 .*; use gemm='torch'"):
        tl.fuse(model.double(), gemm="onednn")
    assert tl.fuse(fused) is fused and tl.fuse(fused, dtype=torch.float32) is fused  # already fused
    with pytest.raises(TypeError, match="tl.fuse takes a reference TimeSformer, got FusedTimeSformer"):
        tl.fuse(fused, dtype=torch.bfloat16)


def test_a_fused_model_stays_on_the_device_and_dtype_it_was_fused_for():
    model = tiny()
    fused = tl.fuse(model)
    video = torch.randn(2, 4, 3, 32, 32)
    want = fused(video)
    assert fused.to("cpu") is fused and fused.float() is fused and fused.to(torch.float32) is fused  # no move
    for move in (lambda m: m.double(), lambda m: m.to(torch.bfloat16), lambda m: m.half()):
        with pytest.raises(
            RuntimeError,
            match=r"made for cpu, torch.float32 .* cannot move to cpu, torch\.(float64|"
            r"bfloat16|float16): fuse the reference model there, tl.fuse\(model.to\('cpu'\), dtype=",
        ):
            move(fused)
    assert all(p.dtype == torch.float32 for p in fused.parameters())  # refused before anything moved
    torch.testing.assert_close(fused(video), want, atol=0, rtol=0)
    assert tl.fuse(model.double()).dtype == torch.float64  # the way to another dtype: fuse again


def test_every_choice_is_made_once_stored_on_the_fused_model_and_printed(monkeypatch):
    timed = []
    real = gemm_module.faster_gemm
    monkeypatch.setattr(gemm_module, "faster_gemm", lambda *a: timed.append(a) or real(*a))
    model = tiny()
    fused = tl.fuse(model)
    assert timed == []  # shapes this small are not timed: oneDNN where the build has it
    assert fused.gemm == GEMMS[-1] and fused.device == torch.device("cpu") and fused.dtype == torch.float32
    first = repr(fused).splitlines()[1].strip()
    assert first == f"dtype=torch.float32, device=cpu, gemm={fused.gemm}, tokens_per_pass={fused.tokens_per_pass}"
    monkeypatch.setattr(gemm_module, "TIMED_FLOPS", 0)  # as TimeSformer-B's shapes are: timed, at every fuse
    assert tl.fuse(model).gemm in GEMMS and tl.fuse(model).gemm in GEMMS
    assert timed == [(64, 32, 128, torch.float32)] * 2  # (tokens of a clip, D, MLP width, dtype): no cache
    assert tl.fuse(model, gemm="torch").gemm == "torch"


def test_the_fused_model_keeps_the_source_models_metadata_and_config_with_its_inference_options():
    model = tiny()
    model.classes, model.run_config = ["a", "b", "c", "d", "e"], tl.load_config("smoke")
    fused = tl.fuse(model)
    assert fused.classes == model.classes and fused.run_config == model.run_config and fused.load_report is None
    assert fused.cfg.class_token_only is True and fused.cfg.embed_dim == model.cfg.embed_dim
    assert isinstance(fused, tl.TimeSformer) and type(fused.blocks[-1].attn) is ClassAttention


@pytest.mark.parametrize("gemm", GEMMS)
@pytest.mark.parametrize("attention_type", WITH_FC)
def test_each_added_fc_is_folded_into_proj_as_a_stock_linear_and_becomes_an_identity(attention_type, gemm):
    model = tiny(attention_type, torch.float64 if gemm == "torch" else torch.float32)
    fused = tl.fuse(model, gemm=gemm)
    tolerance = 1e-14 if gemm == "torch" else 1e-6
    for ref_block, block in zip(model.blocks, fused.blocks, strict=True):
        for step in ref_block.steps:
            attn = getattr(ref_block, f"{step.prefix}attn")
            proj = getattr(block, f"{step.prefix}attn").proj
            assert type(proj) is (torch.nn.Linear if gemm == "torch" else OneDnnLinear)
            if step.with_cls:
                assert torch.equal(proj.weight, attn.proj.weight) and torch.equal(proj.bias, attn.proj.bias)
                continue
            assert type(getattr(block, f"{step.prefix}fc")) is torch.nn.Identity
            fc = getattr(ref_block, f"{step.prefix}fc")
            torch.testing.assert_close(proj.weight, fc.weight @ attn.proj.weight, atol=tolerance, rtol=0)
            torch.testing.assert_close(proj.bias, fc.weight @ attn.proj.bias + fc.bias, atol=tolerance, rtol=0)
    n_fc = sum(p.numel() for n, p in model.named_parameters() if "_fc" in n)
    assert n_fc > 0 and sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in model.parameters()) - n_fc


def test_the_last_block_computes_the_class_token_alone():
    model = tiny(dtype=torch.float64)
    fused = tl.fuse(model)
    seen = {}
    last = fused.blocks[-1]
    last.mlp.register_forward_hook(lambda m, args, out: seen.setdefault("mlp", args[0].shape) and None)
    last.attn.register_forward_hook(lambda m, args, out: seen.setdefault("attn", out[0].shape) and None)
    fused.blocks[0].mlp.register_forward_hook(lambda m, args, out: seen.setdefault("first mlp", args[0].shape) and None)
    fused(torch.randn(2, 4, 3, 32, 32, dtype=torch.float64))
    # the last MLP saw the class tokens alone, the last attention gave one output per frame's class-token copy
    assert seen == {"first mlp": (2, 4, 16, 32), "mlp": (2, 32), "attn": (8, 1, 32)}


def test_onednn_runs_the_blocks_linears_with_gelu_in_fc1_and_plain_ops_are_left_elsewhere():
    model = tiny()
    if not has_onednn_linear():  # a torch build without oneDNN: asking for it is a clear error
        with pytest.raises(ValueError, match="needs a CPU model in fp32 or bf16 and a torch build with oneDNN"):
            tl.fuse(model, gemm="onednn")
        return
    video = torch.randn(2, 4, 3, 32, 32)

    def ops(f) -> dict[str, int]:
        with torch.profiler.profile() as prof:
            f()
        names = [e.name for e in prof.events()]
        return {op: names.count(op) for op in ("mkldnn::_linear_pointwise", "aten::linear", "aten::gelu")}

    fused = tl.fuse(model, gemm="onednn")
    assert all(isinstance(m.act, torch.nn.Identity) and m.fc1.gelu for m in fused.modules() if hasattr(m, "fc1"))
    with torch.inference_mode():
        # 3 blocks: two full (6 Linears on the patches, the MLP's 2 on the class token), the last without its
        # patches' qkv and MLP (5); the class token's q and the head through F.linear; GELU inside fc1's GEMM
        assert ops(lambda: fused(video)) == {"mkldnn::_linear_pointwise": 21, "aten::linear": 2, "aten::gelu": 0}
        plain = tl.fuse(model, gemm="torch")
        assert ops(lambda: plain(video)) == {"mkldnn::_linear_pointwise": 0, "aten::linear": 23, "aten::gelu": 5}


@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(5, 16), (3, 7, 16), (2, 3, 4, 16)])
def test_the_onednn_linear_equals_the_plain_ops_on_any_layout(shape, dtype, bias, gelu):
    if not has_onednn_linear(dtype):
        pytest.skip(f"this torch build or CPU has no oneDNN linear in {dtype}")
    torch.manual_seed(0)
    plain = torch.nn.Linear(16, 24, bias=bias, dtype=dtype)
    layer = OneDnnLinear(plain, gelu=gelu)
    assert layer.weight is plain.weight  # the same tensors
    x = torch.randn(*shape).to(dtype)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    with torch.no_grad():
        expected = F.linear(x.float(), plain.weight.float(), None if plain.bias is None else plain.bias.float())
        expected = F.gelu(expected) if gelu else expected
        got, strided = layer(x), layer(x[::2])  # a view with gaps
    assert got.shape == expected.shape and got.dtype == dtype
    torch.testing.assert_close(got.float(), expected, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(strided.float(), expected[::2], atol=tolerance, rtol=tolerance)


def test_bf16_on_a_cpu_runs_the_explicit_attention_and_its_choices_are_printed():
    fused = tl.fuse(tiny(), dtype=torch.bfloat16)
    attentions = [m for m in fused.modules() if hasattr(m, "fused_attn")]
    assert attentions and all(not m.fused_attn for m in attentions)  # SDPA's CPU kernel is the slower in bf16
    assert f"dtype=torch.bfloat16, device=cpu, gemm={fused.gemm}" in repr(fused)
    assert isinstance(native_bf16(), bool)


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
    assert "pos_embed" in names and not any("_fc" in n for n in names)  # the folded graph
    assert "mkldnn" not in loaded.inlined_graph.str()
