"""The CPU fast paths of the model compute exactly what the plain paths compute.

Each speed trick in `timesformer_lite/model` is chosen by device and grad mode; these tests force the
other choice and compare, so a trick can never change results (benchmarks measure the speed).
"""

import threading

import pytest
import torch
import torch.nn.functional as F

import timesformer_lite as tl
from timesformer_lite.model import attention
from timesformer_lite.model.attention import Attention, Mlp
from timesformer_lite.model.blocks import Block

SCHEMES = ["divided_space_time", "joint_space_time", "space_only", "sparse_local_global", "axial"]


def tiny(attention_type: str = "divided_space_time") -> tl.TimeSformer:
    torch.manual_seed(0)
    cfg = tl.ModelConfig(
        img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=5,
        attention_type=attention_type, drop_path_rate=0.0, init_std=0.2,
    )  # fmt: skip
    return tl.TimeSformer(cfg)


def test_cpu_training_takes_the_explicit_path_and_inference_the_fused_one():
    q = torch.randn(2, 2, 5, 4)
    assert not attention._explicit_is_faster(q)  # no autograd: fused SDPA
    assert attention._explicit_is_faster(q.requires_grad_())
    with torch.no_grad():
        assert not attention._explicit_is_faster(torch.randn(2, 2, 5, 4) * q)


def gradients(model: tl.TimeSformer, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    logits = model(video)
    torch.nn.functional.cross_entropy(logits, torch.arange(len(video)) % 5).backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("attention_type", SCHEMES)
def test_explicit_training_path_gives_the_fused_paths_logits_and_gradients(attention_type, monkeypatch):
    model = tiny(attention_type).train()
    video = torch.randn(3, 4, 3, 32, 32)
    logits, grads = gradients(model, video)
    monkeypatch.setattr(attention, "_explicit_is_faster", lambda q: False)
    fused_logits, fused_grads = gradients(model, video)
    torch.testing.assert_close(logits, fused_logits, atol=1e-5, rtol=0)
    assert grads.keys() == fused_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, fused_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_attention_module_returns_no_weights_unless_asked_on_either_path():
    attn = Attention(16, 2)
    x = torch.randn(3, 5, 16, requires_grad=True)
    out, probs = attn(x)
    assert probs is None and out.shape == (3, 5, 16)
    out_w, probs = attn(x, need_weights=True)
    assert probs.shape == (3, 2, 5, 5)
    torch.testing.assert_close(out, out_w)


def test_the_inference_path_is_taken_only_for_fp32_cpu_inference():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    assert not attention._cpu_inference(x, layer)  # autograd would record: the plain path
    with torch.no_grad():
        assert attention._cpu_inference(x, layer)
        assert not attention._cpu_inference(x.double(), layer.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not attention._cpu_inference(x, layer)


@pytest.mark.parametrize("onednn", [False, True])
def test_inference_linears_run_in_the_library_chosen_for_this_cpu(onednn, monkeypatch):
    monkeypatch.setattr(attention, "_ONEDNN_GEMM", onednn)
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with torch.no_grad(), torch.profiler.profile() as prof:
        attention.linear(layer, x)
        attention.linear(layer, x, gelu=True)
    ops = [e.name for e in prof.events() if e.name in ("aten::addmm", "mkldnn::_linear_pointwise", "aten::gelu_")]
    assert ops == (["mkldnn::_linear_pointwise"] * 2 if onednn else ["aten::addmm", "aten::addmm", "aten::gelu_"])


@pytest.mark.parametrize("into_scratch", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("shape", [(5, 16), (3, 7, 16), (2, 3, 4, 16)])
@pytest.mark.parametrize("onednn", [False, True])
def test_inference_linear_equals_the_layer(shape, gelu, bias, onednn, into_scratch, monkeypatch):
    monkeypatch.setattr(attention, "_ONEDNN_GEMM", onednn)  # either library, whatever the CPU
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 24, bias=bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected = layer(x)
        expected = torch.nn.functional.gelu(expected) if gelu else expected
        got = attention.linear(layer, x, gelu=gelu, into_scratch=into_scratch).clone()
        strided = attention.linear(layer, x[::2], gelu=gelu, into_scratch=into_scratch)  # a view with gaps
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(strided, expected[::2], atol=1e-5, rtol=1e-5)


def test_scratch_outputs_share_one_buffer_per_thread_that_no_module_output_views(monkeypatch):
    monkeypatch.setattr(attention, "_ONEDNN_GEMM", False)  # the MKL path, the one that writes into scratch
    layer = torch.nn.Linear(16, 24)
    x = torch.randn(5, 16)
    with torch.no_grad():
        first = attention.linear(layer, x, into_scratch=True)
        second = attention.linear(layer, 2 * x, into_scratch=True)
        assert second.data_ptr() == first.data_ptr()  # the same memory, so `first` now holds `second`
        torch.testing.assert_close(first, layer(2 * x))
        assert attention.linear(layer, x).data_ptr() != first.data_ptr()  # not asked: a new tensor
        elsewhere = []
        thread = threading.Thread(target=lambda: elsewhere.append(attention.linear(layer, x, into_scratch=True)))
        thread.start()
        thread.join()
        assert elsewhere[0].data_ptr() != first.data_ptr()  # each thread has its own buffer
        torch.testing.assert_close(elsewhere[0], layer(x))
        monkeypatch.setattr(attention, "SCRATCH_BYTES", 5 * 24 * 4 - 1)  # one float over the cap
        assert attention.scratch(5, 24) is None
        assert attention.linear(layer, x, into_scratch=True).data_ptr() != first.data_ptr()
        monkeypatch.undo()
        monkeypatch.setattr(attention, "_ONEDNN_GEMM", False)
        scratch = attention.scratch
        block = tiny().blocks[0].eval()
        seq = torch.randn(3, 5, 32)
        buffer = attention.scratch(100, 100).data_ptr()  # large enough for all of them: allocated once
        calls = []
        monkeypatch.setattr(attention, "scratch", lambda *shape: calls.append(shape) or scratch(*shape))
        outputs = [*block.attn.heads(seq, need_weights=True), block.attn(seq)[0], block.mlp(seq)]
    assert calls == [(15, 96), (15, 96), (15, 128)]  # q, k, v twice and the MLP's hidden layer
    assert attention._SCRATCH.buffer.data_ptr() == buffer
    assert all(out.untyped_storage().data_ptr() != buffer for out in outputs)


@pytest.mark.parametrize("onednn", [False, True])
@pytest.mark.parametrize("attention_type", SCHEMES)
def test_fp32_cpu_inference_fast_path_gives_the_plain_paths_logits(attention_type, onednn, monkeypatch):
    monkeypatch.setattr(attention, "_ONEDNN_GEMM", onednn)
    model = tiny(attention_type).eval()
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        fast = model(video)
        monkeypatch.setattr(attention, "_cpu_inference", lambda x, layer: False)
        plain = model(video)
        plain_explicit, _ = model(video, return_attention=True)
    assert fast.abs().max() > 0.1  # non-trivial logits at init_std 0.2
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast, plain_explicit, atol=1e-5, rtol=0)


def test_fast_path_choice_compiles_into_one_graph():
    model = tiny().eval()
    video = torch.randn(2, 4, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True)  # raises on any graph break
    with torch.no_grad():
        torch.testing.assert_close(compiled(video), model(video), atol=1e-5, rtol=0)


@pytest.mark.parametrize("length", [4, 8, 17])
def test_short_row_softmax_equals_torch_softmax_and_its_gradient(length):
    torch.manual_seed(0)
    x = (3 * torch.randn(6, 2, 5, length, dtype=torch.float64)).requires_grad_()
    grad = torch.randn(6, 2, 5, length, dtype=torch.float64)
    (expected_grad,) = torch.autograd.grad(x.softmax(-1), x, grad)
    y = attention.softmax(x)
    (got_grad,) = torch.autograd.grad(y, x, grad)
    torch.testing.assert_close(y, x.softmax(-1), atol=1e-12, rtol=0)
    torch.testing.assert_close(got_grad, expected_grad, atol=1e-12, rtol=0)
    assert torch.autograd.gradcheck(attention._ShortSoftmax.apply, (x[:2, :1, :2].detach().requires_grad_(),))


def randomise_added_steps(model: tl.TimeSformer) -> None:
    """Give every `*_fc` non-zero weights (they start at zero, which would make folding them trivial)."""
    with torch.no_grad():
        for blk in model.blocks:
            for name, layer in blk.named_children():
                if name.endswith("fc"):
                    layer.weight.normal_(0, 0.2)
                    layer.bias.normal_(0, 0.2)


@pytest.mark.parametrize("attention_type", ["divided_space_time", "sparse_local_global", "axial"])  # with `*_fc`
def test_folded_fc_and_proj_give_the_plain_logits_and_follow_weight_changes(attention_type, monkeypatch):
    model = tiny(attention_type).eval()
    randomise_added_steps(model)
    video = torch.randn(2, 4, 3, 32, 32)

    def both() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            fast = model(video)
            with monkeypatch.context() as m:
                m.setattr(Block, "_fold_fc", lambda self, attn, x, tokens: False)
                plain = model(video)
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
        return fast, plain

    first, _ = both()
    other = tiny(attention_type)
    torch.manual_seed(1)  # tiny() seeds 0: other weights than model's
    randomise_added_steps(other)
    model.load_state_dict(other.state_dict())  # new weights: the fold must follow them
    second, _ = both()
    assert (second - first).abs().max() > 1e-3
    with torch.no_grad():  # an in-place update, as an optimizer step does
        for blk in model.blocks:
            for name, layer in blk.named_children():
                if name.endswith("fc"):
                    layer.weight.mul_(-1)
    third, _ = both()
    assert (third - second).abs().max() > 1e-3
    for blk in model.blocks:  # a write autograd never sees: nothing cached may go stale
        for name, layer in blk.named_children():
            if name.endswith("fc"):
                layer.weight.data.mul_(0.5)
    fourth, _ = both()
    assert (fourth - third).abs().max() > 1e-4
    model.double()
    video = video.double()
    both()
    assert model.state_dict().keys() == other.state_dict().keys()  # folding adds no parameter or buffer


def test_a_fold_is_made_once_and_remade_only_when_a_weight_changes():
    model = tiny().eval()
    randomise_added_steps(model)
    blk = model.blocks[0]
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        model(video)
        (key,) = blk._folds
        fold = blk._folds[key][1]
        model(video)
        assert blk._folds[key][1] is fold  # the same weights: reused, not recomputed
        blk.temporal_attn.proj.bias.data[3] += 1.0  # one element, written where no version counter sees it
        model(video)
    refold = blk._folds[key][1]
    assert refold is not fold
    torch.testing.assert_close(refold.bias - fold.bias, blk.temporal_fc.weight[:, 3], atol=1e-6, rtol=0)
    assert len(blk._folds) == 1 and len(model.blocks[1]._folds) == 1  # one added step per divided block


def test_a_fold_made_under_bf16_autocast_never_reaches_fp32_inference(monkeypatch):
    model = tiny().eval()
    randomise_added_steps(model)
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(video)
        fp32 = model(video)
        monkeypatch.setattr(Block, "_fold_fc", lambda self, attn, x, tokens: False)
        plain = model(video)
    assert fp32.dtype == torch.float32
    torch.testing.assert_close(fp32, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("drop_path", [0.0, 0.5])
@pytest.mark.parametrize("attention_type", ["divided_space_time", "sparse_local_global", "axial"])
def test_training_folds_too_with_the_plain_paths_loss_and_gradients(attention_type, drop_path, monkeypatch):
    torch.manual_seed(0)
    cfg = tiny(attention_type).cfg
    cfg.drop_path_rate = drop_path
    model = tl.TimeSformer(cfg).double().train()
    randomise_added_steps(model)
    video = torch.randn(3, 4, 3, 32, 32, dtype=torch.float64)
    torch.manual_seed(5)  # the same drop-path masks for both
    logits, grads = gradients(model, video)
    with monkeypatch.context() as m:
        m.setattr(Block, "_fold_fc", lambda self, attn, x, tokens: False)
        torch.manual_seed(5)
        plain_logits, plain_grads = gradients(model, video)
    torch.testing.assert_close(logits, plain_logits, atol=1e-12, rtol=0)
    for name, g in grads.items():
        torch.testing.assert_close(g, plain_grads[name], atol=1e-12, rtol=1e-10, msg=name)
    folded_layers = [n for n in grads if n.endswith("fc.weight") and "mlp" not in n]
    assert folded_layers and all(grads[n].abs().max() > 0 for n in folded_layers)  # gradients reach both layers
    assert all(not blk._folds for blk in model.blocks)  # nothing is kept in training


def test_what_folds_and_what_is_kept():
    blk = tiny().blocks[0]
    attn, x = blk.temporal_attn, torch.randn(2, 4, 16, 32)
    assert blk._fold_fc(attn, x, 64) and not blk._fold_fc(attn, x, 32)  # more tokens than channels only
    assert not blk._fold_fc(attn, x.to("meta"), 64)  # FLOP counting sees the reference arithmetic
    attn.proj_drop.p = 0.1
    assert not blk._fold_fc(attn, x, 64)  # dropout between proj and fc in training
    assert not blk._keep_folds(x)  # training mode
    blk.eval()
    assert blk._fold_fc(attn, x, 64)  # dropout is off in eval
    assert not blk._keep_folds(x)  # autograd records
    with torch.no_grad():
        assert blk._keep_folds(x)


def full_last_block(monkeypatch) -> None:
    """Make every block compute its patch tokens too (the plain path the cls-only last block must equal)."""
    forward = Block.forward
    monkeypatch.setattr(Block, "forward", lambda self, x, cls, grid, need_weights=False, cls_only=False: forward(
        self, x, cls, grid, need_weights, False))  # fmt: skip


@pytest.mark.parametrize("attention_type", SCHEMES)
def test_class_token_only_last_block_gives_the_full_blocks_logits_and_gradients(attention_type, monkeypatch):
    model = tiny(attention_type).double().train()
    randomise_added_steps(model)
    video = torch.randn(3, 4, 3, 32, 32, dtype=torch.float64)
    logits, grads = gradients(model, video)
    with torch.no_grad():
        inference = model.eval()(video)
    with monkeypatch.context() as m:
        full_last_block(m)
        full_logits, full_grads = gradients(model.train(), video)
        with torch.no_grad():
            full_inference = model.eval()(video)
    torch.testing.assert_close(logits, full_logits, atol=1e-12, rtol=0)
    torch.testing.assert_close(inference, full_inference, atol=1e-12, rtol=0)
    for name, g in grads.items():  # the skipped outputs had no gradient to give
        torch.testing.assert_close(g, full_grads[name], atol=1e-12, rtol=1e-10, msg=name)
    assert grads["blocks.1.mlp.fc1.weight"].abs().max() > 0


def test_last_block_skips_the_patch_tokens_work_unless_maps_are_asked():
    blk = tiny().blocks[1].eval()
    x, cls = torch.randn(2, 4, 16, 32), torch.randn(2, 32)
    calls = []
    blk.mlp.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    with torch.no_grad():
        full_x, full_cls, _ = blk(x, cls, (4, 4))
        none_x, only_cls, maps = blk(x, cls, (4, 4), cls_only=True)
        maps_x, maps_cls, maps = blk(x, cls, (4, 4), need_weights=True, cls_only=True)
    assert none_x is None and calls[2] == (2, 32)  # the MLP saw the class tokens alone
    torch.testing.assert_close(only_cls, full_cls, atol=1e-5, rtol=0)
    assert set(maps) == {"time", "space"}  # maps need every token: the full block
    torch.testing.assert_close(maps_x, full_x, atol=1e-5, rtol=0)
    torch.testing.assert_close(maps_cls, full_cls, atol=1e-5, rtol=0)
    q = torch.randn(3, 5, 32)
    attn = blk.attn
    torch.testing.assert_close(attn.first_query(q), attn.heads(q)[0][:, 0], atol=1e-6, rtol=0)


def plain_mlp(mlp: Mlp, x: torch.Tensor) -> torch.Tensor:
    return F.linear(F.gelu(F.linear(x, mlp.fc1.weight, mlp.fc1.bias)), mlp.fc2.weight, mlp.fc2.bias)


@pytest.mark.parametrize("precision", ["float64", "bf16 autocast"])
def test_training_mlp_recomputes_gelu_with_the_plain_ops_outputs_and_gradients(precision, monkeypatch):
    assert not attention._recompute_gelu(torch.zeros(1))  # CPUs keep both, the faster there
    monkeypatch.setattr(attention, "_recompute_gelu", lambda x: True)  # as on a GPU
    torch.manual_seed(0)
    mlp = Mlp(16, 64).train()
    x = torch.randn(3, 5, 16)
    if precision == "float64":
        mlp, x = mlp.double(), x.double()
    x.requires_grad_()
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


def test_training_mlp_with_dropout_keeps_its_mask_path(monkeypatch):
    monkeypatch.setattr(attention, "_recompute_gelu", lambda x: True)
    mlp = Mlp(16, 64, drop=0.5).train()
    x = torch.randn(3, 5, 16, requires_grad=True)
    torch.manual_seed(1)
    got = mlp(x)
    torch.manual_seed(1)
    expected = mlp.drop(F.linear(mlp.drop(F.gelu(mlp.fc1(x))), mlp.fc2.weight, mlp.fc2.bias))
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_training_mlp_that_recomputes_gelu_compiles_into_one_graph(monkeypatch):
    monkeypatch.setattr(attention, "_recompute_gelu", lambda x: True)
    torch.manual_seed(0)
    mlp = Mlp(16, 64).train()
    x = torch.randn(3, 5, 16, requires_grad=True)
    torch.compile(mlp, fullgraph=True)(x).square().sum().backward()  # raises on any graph break
    compiled = [p.grad.clone() for p in mlp.parameters()]
    mlp.zero_grad()
    plain_mlp(mlp, x).square().sum().backward()
    for got, p in zip(compiled, mlp.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-5)


def test_scratch_serves_inference_mode_and_no_grad_in_either_order(monkeypatch):
    monkeypatch.setattr(attention, "_ONEDNN_GEMM", False)
    monkeypatch.setattr(attention, "_SCRATCH", attention._Scratch())  # a buffer is first made below
    model = tiny().eval()
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        expected = model(video)
    monkeypatch.setattr(attention, "_SCRATCH", attention._Scratch())
    with torch.inference_mode():  # the buffer is made here: it must stay writable outside inference mode
        first = model(video)
    with torch.no_grad():
        second = model(video)
    assert torch.equal(first, expected) and torch.equal(second, expected)
