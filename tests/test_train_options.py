"""Training-speed options compute exactly what the reference model computes (benchmarks measure the speed)."""

import copy

import pytest
import torch
import torch.nn.functional as F

import timesformer_lite as tl
from timesformer_lite.model import Attention, Block, Mlp
from timesformer_lite.train.options import (
    ClassTokenOnlyBlock,
    GeluLinear,
    ShortRowSoftmax,
    TrainingOptions,
    apply_training_options,
    training_options,
)

SCHEMES = ["divided_space_time", "joint_space_time", "space_only", "sparse_local_global", "axial"]
EVERY_OPTION = [
    TrainingOptions(False, True, False),
    TrainingOptions(True, False, True),
    TrainingOptions(False, True, True),
]


def tiny(attention_type: str = "divided_space_time", **kw) -> tl.TimeSformer:
    torch.manual_seed(0)
    cfg = tl.ModelConfig(
        img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=5,
        attention_type=attention_type, drop_path_rate=0.0, init_std=0.2, **kw,
    )  # fmt: skip
    model = tl.TimeSformer(cfg)
    with torch.no_grad():  # non-zero *_fc and time embedding, so every step contributes
        for name, p in model.named_parameters():
            if name.endswith(("fc.weight", "time_embed")):
                p.normal_(0, 0.2)
    return model


def logits_and_gradients(model: tl.TimeSformer, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    logits = model(video)
    F.cross_entropy(logits, torch.arange(len(video)) % 5).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_the_trainer_defaults_are_explicit_attention_on_cpus_and_fused_with_gelu_recompute_on_gpus():
    assert training_options(torch.device("cpu")) == TrainingOptions(False, True, False, True)
    assert training_options(torch.device("cuda", 0)) == TrainingOptions(True, False, True, True)


@pytest.mark.parametrize("options", EVERY_OPTION, ids=str)
@pytest.mark.parametrize("attention_type", SCHEMES)
def test_every_option_gives_the_reference_logits_and_gradients_in_float64(attention_type, options):
    reference = tiny(attention_type).double().train()
    video = torch.randn(3, 4, 3, 32, 32, dtype=torch.float64)
    want_logits, want_grads = logits_and_gradients(reference, video)
    model = apply_training_options(copy.deepcopy(reference), options)
    got_logits, got_grads = logits_and_gradients(model, video)
    torch.testing.assert_close(got_logits, want_logits, atol=1e-12, rtol=0)
    assert got_grads.keys() == want_grads.keys()
    for name, g in want_grads.items():
        torch.testing.assert_close(got_grads[name], g, atol=1e-12, rtol=0, msg=name)


def test_options_keep_every_parameter_object_and_state_dict_name():
    model = tiny()
    params = dict(model.named_parameters())
    keys = list(model.state_dict())
    apply_training_options(model, TrainingOptions(False, True, True, True))
    assert isinstance(model.blocks[-1], ClassTokenOnlyBlock) and type(model.blocks[0]) is Block
    assert all(isinstance(m.fc2, GeluLinear) for m in model.modules() if isinstance(m, Mlp))
    assert all(
        isinstance(m.softmax, ShortRowSoftmax) and not m.fused_attn for m in model.modules() if isinstance(m, Attention)
    )
    assert list(model.state_dict()) == keys
    assert all(p is params[n] for n, p in model.named_parameters())  # an optimizer made before still holds them
    apply_training_options(model, TrainingOptions())  # and back to the reference's modules
    assert all(
        type(m.fc2) is torch.nn.Linear and isinstance(m.act, torch.nn.GELU)
        for m in model.modules()
        if isinstance(m, Mlp)
    )
    assert all(p is params[n] for n, p in model.named_parameters())


def test_class_token_only_block_gives_the_full_blocks_maps_when_they_are_asked_for():
    model = tiny().eval()
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        want, want_maps = model(video, return_attention=True)
        apply_training_options(model, TrainingOptions(class_token_only=True))
        got, got_maps = model(video, return_attention=True)
        fast = model(video)
    assert torch.equal(got, want) and len(got_maps.space) == len(want_maps.space) == 2
    torch.testing.assert_close(fast, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("length", [3, 8, 15, 16, 40])
def test_short_row_softmax_equals_softmax_with_its_gradient(length):
    x = torch.randn(4, 3, 5, length, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 3, 5, length, dtype=torch.float64)
    (ShortRowSoftmax()(x) * g).sum().backward()
    got = x.grad.clone()
    x.grad = None
    (x.softmax(-1) * g).sum().backward()
    torch.testing.assert_close(ShortRowSoftmax()(x), x.softmax(-1), atol=1e-15, rtol=0)
    torch.testing.assert_close(got, x.grad, atol=1e-14, rtol=0)


def plain_mlp(mlp: Mlp, x: torch.Tensor) -> torch.Tensor:
    return F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)


@pytest.mark.parametrize("precision", ["float64", "bf16 autocast"])
def test_gelu_recompute_keeps_the_hidden_layer_once_with_the_plain_ops_outputs_and_gradients(precision):
    torch.manual_seed(0)
    mlp = Mlp(16, 64).train()
    x = torch.randn(3, 5, 16)
    if precision == "float64":
        mlp, x = mlp.double(), x.double()
    x.requires_grad_()
    apply_training_options(mlp, TrainingOptions(recompute_gelu=True))
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "float64")

    def run(f):
        mlp.zero_grad()
        x.grad = None
        with amp:
            y = f()
        (y.float() ** 2).sum().backward()
        return [y.detach(), x.grad, *(p.grad for p in mlp.parameters())]

    hidden = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: hidden.append(t.numel() == 3 * 5 * 64) or t, lambda t: t):
        got = run(lambda: mlp(x))
    assert sum(hidden) == 1  # the hidden layer is kept once (before GELU), not twice
    for a, b in zip(got, run(lambda: plain_mlp(mlp, x)), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_gelu_recompute_leaves_an_mlp_with_dropout_as_it_is():
    mlp = apply_training_options(Mlp(16, 64, drop=0.5), TrainingOptions(recompute_gelu=True))
    assert type(mlp.fc2) is torch.nn.Linear and isinstance(mlp.act, torch.nn.GELU)


def test_gelu_recompute_compiles_into_one_graph():
    torch.manual_seed(0)
    mlp = apply_training_options(Mlp(16, 64).train(), TrainingOptions(recompute_gelu=True))
    x = torch.randn(3, 5, 16, requires_grad=True)
    torch.compile(mlp, fullgraph=True)(x).square().sum().backward()  # raises on any graph break
    compiled = [p.grad.clone() for p in mlp.parameters()]
    mlp.zero_grad()
    plain_mlp(mlp, x).square().sum().backward()
    for got, p in zip(compiled, mlp.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-5)
