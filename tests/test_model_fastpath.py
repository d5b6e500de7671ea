"""The CPU fast paths of the model compute exactly what the plain paths compute.

Each speed trick in `timesformer_lite/model` is chosen by device and grad mode; these tests force the
other choice and compare, so a trick can never change results (benchmarks measure the speed).
"""

import pytest
import torch

import timesformer_lite as tl
from timesformer_lite.model import attention
from timesformer_lite.model.attention import Attention

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
