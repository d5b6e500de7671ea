"""Training-speed options: built at construction, equal to the reference, resolved once per device and recorded.

Speed is measured by the benchmarks (benchmarks/RESULTS.md); these tests pin the numbers and the plumbing.
"""

import json

import pytest
import torch
import torch.nn.functional as F
import yaml

import timesformer_lite as tl
from timesformer_lite.config import ConfigError
from timesformer_lite.data import build_dataset
from timesformer_lite.layers import ShortRowSoftmax
from timesformer_lite.model import Attention, Block, Mlp
from timesformer_lite.model.attention import ClassAttention
from timesformer_lite.train import run
from timesformer_lite.train.options import options_of, resolve_options, training_options
from timesformer_lite.weights.checkpoint import read_trainer_checkpoint

SCHEMES = ["divided_space_time", "joint_space_time", "space_only", "sparse_local_global", "axial"]
CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)
EVERY_OPTION = [  # the CPU trainer's, the GPU trainer's, and each switch against the reference's other choices
    training_options(CPU),
    training_options(GPU),
    dict(fused_attn=False, short_row_softmax=True, recompute_gelu=True, class_token_only=False),
    dict(fused_attn=True, short_row_softmax=False, recompute_gelu=False, class_token_only=True),
]


def config(attention_type: str = "divided_space_time", **kw) -> tl.ModelConfig:
    return tl.ModelConfig(
        img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=5,
        attention_type=attention_type, drop_path_rate=0.0, init_std=0.2, **kw,
    )  # fmt: skip


def reference(attention_type: str = "divided_space_time") -> tl.TimeSformer:
    torch.manual_seed(0)
    model = tl.TimeSformer(config(attention_type))
    with torch.no_grad():  # non-zero *_fc and time embedding, so every step contributes
        for name, p in model.named_parameters():
            if name.endswith(("fc.weight", "time_embed")):
                p.normal_(0, 0.2)
    return model


def with_options(model: tl.TimeSformer, **options) -> tl.TimeSformer:
    """A model built with `options`, holding `model`'s weights."""
    built = tl.TimeSformer(config(model.cfg.attention_type, **options)).to(next(model.parameters()).dtype)
    built.load_state_dict(model.state_dict(), strict=True)
    return built


def logits_and_gradients(model: tl.TimeSformer, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    logits = model(video)
    F.cross_entropy(logits, torch.arange(len(video)) % 5).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_the_trainer_chooses_explicit_attention_on_cpus_and_fused_with_gelu_recompute_on_gpus():
    assert training_options(CPU) == dict(
        fused_attn=False, short_row_softmax=True, recompute_gelu=False, class_token_only=True
    )
    assert training_options(GPU) == dict(
        fused_attn=True, short_row_softmax=False, recompute_gelu=True, class_token_only=True
    )


@pytest.mark.parametrize("options", EVERY_OPTION, ids=lambda o: ",".join(k for k, v in o.items() if v))
@pytest.mark.parametrize("attention_type", SCHEMES)
def test_every_option_gives_the_reference_logits_and_gradients_in_float64(attention_type, options):
    ref = reference(attention_type).double().train()
    video = torch.randn(3, 4, 3, 32, 32, dtype=torch.float64)
    want_logits, want_grads = logits_and_gradients(ref, video)
    got_logits, got_grads = logits_and_gradients(with_options(ref, **options).train(), video)
    torch.testing.assert_close(got_logits, want_logits, atol=1e-12, rtol=0)
    assert got_grads.keys() == want_grads.keys()
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, atol=1e-12, rtol=0, msg=name)


def test_options_are_built_in_keep_every_state_dict_name_and_show_in_the_models_repr():
    ref = reference()
    model = with_options(ref, **training_options(GPU) | {"fused_attn": False, "short_row_softmax": True})
    assert list(model.state_dict()) == list(ref.state_dict())  # checkpoints load either way
    assert type(model.blocks[-1].attn) is ClassAttention and type(model.blocks[0].attn) is Attention
    assert all(type(b) is Block and type(b.temporal_attn) is Attention for b in model.blocks)
    assert all(m.recompute_gelu and isinstance(m.act, torch.nn.GELU) for m in model.modules() if isinstance(m, Mlp))
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    assert all(isinstance(m.softmax, ShortRowSoftmax) and not m.fused_attn for m in attentions)
    text = repr(model)
    assert text.count("recompute_gelu=True") == 2 and text.count("ShortRowSoftmax()") == 4
    assert text.count("ClassAttention(") == 1 and "queries=first token" in text
    plain = repr(ref)
    assert "ClassAttention" not in plain and "ShortRowSoftmax" not in plain and "recompute_gelu" not in plain


def test_auto_builds_the_reference_and_the_trainer_resolves_it_for_its_device():
    cfg = config()
    assert all(getattr(cfg, k) == "auto" for k in training_options(CPU))
    assert options_of(cfg) == dict(
        fused_attn=True, short_row_softmax=False, recompute_gelu=False, class_token_only=False
    )
    for device in (CPU, GPU):
        resolved, notes = resolve_options(cfg, device)
        assert options_of(resolved) == training_options(device) and notes == []
        assert {k: getattr(resolved, k) for k in training_options(device)} == training_options(device)
    mine, _ = resolve_options(config(fused_attn=True, class_token_only=False), CPU)  # chosen: kept
    assert (mine.fused_attn, mine.class_token_only, mine.short_row_softmax) == (True, False, True)


def test_gelu_recompute_with_dropout_is_a_config_error_or_a_line_never_silent():
    with pytest.raises(ConfigError, match=r"model.recompute_gelu=True needs model.drop_rate=0 .*it is 0.1"):
        config(recompute_gelu=True, drop_rate=0.1)
    resolved, notes = resolve_options(config(drop_rate=0.1), GPU)
    assert resolved.recompute_gelu is False and resolved.fused_attn is True
    assert notes == [
        "model.recompute_gelu=auto resolves to false on cuda: dropout (model.drop_rate=0.1) sits between GELU and fc2"
    ]
    with pytest.raises(ValueError, match="recompute_gelu needs drop=0, got drop=0.5"):
        Mlp(16, 64, drop=0.5, recompute_gelu=True)
    with pytest.raises(ConfigError, match="model.fused_attn='yes' is not one of true, false, auto"):
        config(fused_attn="yes")


def test_the_class_token_only_block_gives_the_full_blocks_maps_when_they_are_asked_for():
    ref = reference().eval()
    model = with_options(ref, class_token_only=True).eval()
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        want, want_maps = ref(video, return_attention=True)
        got, got_maps = model(video, return_attention=True)
        fast = model(video)
    assert torch.equal(got, want) and len(got_maps.space) == len(want_maps.space) == 2
    assert all(torch.equal(a, b) for a, b in zip(got_maps.space, want_maps.space, strict=True))
    torch.testing.assert_close(fast, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_class_attention_is_the_first_tokens_output_of_the_full_attention(dtype):
    torch.manual_seed(0)
    full = Attention(32, 4).to(dtype)
    first = ClassAttention(32, 4).to(dtype)
    first.load_state_dict(full.state_dict())
    with torch.no_grad():
        full.qkv.bias.normal_()  # the key bias cancels in the softmax, the value bias passes through: test both
        first.qkv.bias.copy_(full.qkv.bias)
    x = torch.randn(5, 17, 32, dtype=dtype)
    out, probs = first(x)
    want, _ = full(x)
    assert out.shape == (5, 1, 32) and probs is None
    torch.testing.assert_close(out[:, 0], want[:, 0], atol=1e-12 if dtype == torch.float64 else 1e-5, rtol=0)
    everything, weights = first(x, need_weights=True)  # the maps need every token: the full attention
    assert everything.shape == (5, 17, 32) and weights.shape == (5, 4, 17, 17)
    torch.testing.assert_close(everything, want, atol=1e-12 if dtype == torch.float64 else 1e-5, rtol=0)


@pytest.mark.parametrize("length", [3, 8, 15, 16, 17, 31, 32, 40])
def test_short_row_softmax_equals_softmax_with_its_gradient(length):
    x = torch.randn(4, 3, 5, length, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 3, 5, length, dtype=torch.float64)
    (ShortRowSoftmax()(x) * g).sum().backward()
    got = x.grad.clone()
    x.grad = None
    (x.softmax(-1) * g).sum().backward()
    torch.testing.assert_close(ShortRowSoftmax()(x), x.softmax(-1), atol=1e-15, rtol=0)
    torch.testing.assert_close(got, x.grad, atol=1e-14, rtol=0)


@pytest.mark.parametrize("length", [8, 17, 40])
def test_short_row_softmax_in_bfloat16_is_the_float32_softmax_rounded_once(length):
    """bf16 in, bf16 out and bf16 gradients; short rows are computed in float32 and rounded once at the end, so
    they are the float32 softmax to bf16's rounding (torch's bf16 kernel, used for long rows, rounds as well)."""
    x32 = torch.randn(64, 4, 9, length) * 3
    g32 = torch.randn(64, 4, 9, length)
    x = x32.bfloat16().requires_grad_()
    y = ShortRowSoftmax()(x)
    (y * g32.bfloat16()).sum().backward()
    assert y.dtype == x.grad.dtype == torch.bfloat16
    xr = x32.bfloat16().float().requires_grad_()  # the same inputs, in float32
    want = xr.softmax(-1)
    (want * g32.bfloat16().float()).sum().backward()
    torch.testing.assert_close(y.float(), want, atol=4e-3, rtol=8e-3)
    torch.testing.assert_close(x.grad.float(), xr.grad, atol=3e-2, rtol=3e-2)
    if length < ShortRowSoftmax.SHORT:  # float32 arithmetic: the float32 result rounded once to bf16
        assert (y == want.detach().bfloat16()).float().mean() > 0.999  # ties of the last float32 bit aside


def test_short_row_softmax_without_autograd_is_plain_ops_with_the_same_numbers():
    x = torch.randn(6, 4, 8, 8, dtype=torch.bfloat16)
    with torch.no_grad():
        traced = torch.jit.trace(ShortRowSoftmax(), x)
        plain = ShortRowSoftmax()(x)
    assert "PythonOp" not in str(traced.graph)  # a trace (export) sees plain ops, not the autograd Function
    assert torch.equal(plain, ShortRowSoftmax()(x.clone().requires_grad_()).detach()) and torch.equal(traced(x), plain)


def plain_mlp(mlp: Mlp, x: torch.Tensor) -> torch.Tensor:
    return F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)


@pytest.mark.parametrize("precision", ["float64", "bf16 autocast"])
def test_gelu_recompute_keeps_the_hidden_layer_once_with_the_plain_ops_outputs_and_gradients(precision):
    torch.manual_seed(0)
    mlp = Mlp(16, 64, recompute_gelu=True).train()
    x = torch.randn(3, 5, 16)
    if precision == "float64":
        mlp, x = mlp.double(), x.double()
    x.requires_grad_()
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "float64")

    def run_(f):
        mlp.zero_grad()
        x.grad = None
        with amp:
            y = f()
        (y.float() ** 2).sum().backward()
        return [y.detach(), x.grad, *(p.grad for p in mlp.parameters())]

    hidden = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: hidden.append(t.numel() == 3 * 5 * 64) or t, lambda t: t):
        got = run_(lambda: mlp(x))
    assert sum(hidden) == 1  # the hidden layer is kept once (before GELU), not twice
    for a, b in zip(got, run_(lambda: plain_mlp(mlp, x)), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_gelu_recompute_compiles_into_one_graph():
    torch.manual_seed(0)
    mlp = Mlp(16, 64, recompute_gelu=True).train()
    x = torch.randn(3, 5, 16, requires_grad=True)
    torch.compile(mlp, fullgraph=True)(x).square().sum().backward()  # raises on any graph break
    compiled = [p.grad.clone() for p in mlp.parameters()]
    mlp.zero_grad()
    plain_mlp(mlp, x).square().sum().backward()
    for got, p in zip(compiled, mlp.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-5)


def test_the_options_in_force_are_written_to_config_yaml_the_checkpoint_and_summary(tmp_path):
    data = tmp_path / "data"
    overrides = [f"data.root={data}", f"train.out_dir={tmp_path}", "train.test=false", "model.fused_attn=true"]
    cfg = tl.load_config("smoke", overrides)
    build_dataset(cfg, "train")  # the toy clips
    result = run(cfg)
    want = training_options(CPU) | {"fused_attn": True}  # the CPU trainer's choices, the one set by hand kept
    written = yaml.safe_load((result.run_dir / "config.yaml").read_text())["model"]
    assert {k: written[k] for k in want} == want
    assert {k: read_trainer_checkpoint(result.run_dir / "last.pt")["config"]["model"][k] for k in want} == want
    assert json.loads((result.run_dir / "summary.json").read_text())["model_options"] == want
    assert result.summary["model_options"] == want
