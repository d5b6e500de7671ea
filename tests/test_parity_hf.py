"""Parity with Hugging Face `transformers`: the tests that matter most.

Random weights built from a config (no downloads). float64 proves the semantics (max |logit diff| <= 1e-6
with weights perturbed off their init); float32 at the peer's default init must agree to 1e-4.
"""

import pytest
import torch
from transformers import TimesformerConfig, TimesformerForVideoClassification, ViTConfig, ViTForImageClassification

import timesformer_lite as tl
from timesformer_lite.train.options import resolve_options
from timesformer_lite.weights import config_to_hf, state_dict_from_hf

CONFIGS = [
    dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=7),
    dict(img_size=48, patch_size=16, num_frames=3, embed_dim=48, depth=3, num_heads=4, num_classes=5),
    dict(img_size=64, patch_size=16, num_frames=8, embed_dim=64, depth=2, num_heads=4, num_classes=11, qkv_bias=False),
]


def hf_and_ours(cfg: tl.ModelConfig, dtype: torch.dtype, perturb: float):
    hf = TimesformerForVideoClassification(TimesformerConfig(**config_to_hf(cfg)))
    hf = hf.to(dtype).eval()
    if perturb:
        with torch.no_grad():
            for p in hf.parameters():
                p.add_(torch.randn_like(p) * perturb)
    ours = tl.TimeSformer(cfg).to(dtype).eval()
    state, unmapped = state_dict_from_hf(hf.state_dict())
    assert unmapped == []
    ours.load_state_dict(state, strict=True)
    return hf, ours


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
@pytest.mark.parametrize("values", CONFIGS, ids=["32px-4f", "48px-3f", "64px-8f-nobias"])
def test_logits_equal_hf_in_float64(attention_type, values):
    torch.manual_seed(0)
    cfg = tl.ModelConfig(attention_type=attention_type, drop_path_rate=0.0, **values)
    hf, ours = hf_and_ours(cfg, torch.float64, perturb=0.3)
    video = torch.randn(2, cfg.num_frames, 3, cfg.img_size, cfg.img_size, dtype=torch.float64)
    with torch.no_grad():
        expected = hf(pixel_values=video).logits
        got = ours(video)
        got_explicit, _ = ours(video, return_attention=True)
    assert expected.abs().max() > 1.0  # the perturbed model produces non-trivial logits
    assert (got - expected).abs().max().item() <= 1e-6
    assert (got_explicit - expected).abs().max().item() <= 1e-6


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
@pytest.mark.parametrize("values", CONFIGS[:2], ids=["32px-4f", "48px-3f"])
def test_logits_equal_hf_in_float32_at_default_init(attention_type, values):
    torch.manual_seed(1)
    cfg = tl.ModelConfig(attention_type=attention_type, drop_path_rate=0.0, **values)
    hf, ours = hf_and_ours(cfg, torch.float32, perturb=0.0)
    video = torch.randn(3, cfg.num_frames, 3, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        diff = (ours(video) - hf(pixel_values=video).logits).abs().max().item()
    assert diff <= 1e-4


@pytest.mark.parametrize("device_options", ["cpu", "cuda"])
@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_the_fused_model_and_the_trainers_options_give_hfs_logits_in_float64(attention_type, device_options):
    """tl.fuse(model) and the model built with the options the trainer resolves for a CPU or a GPU (built here on
    the CPU) hold HF's weights and give its logits."""
    torch.manual_seed(4)
    cfg = tl.ModelConfig(attention_type=attention_type, drop_path_rate=0.0, **CONFIGS[1])
    hf, ours = hf_and_ours(cfg, torch.float64, perturb=0.3)
    options, _ = resolve_options(cfg, torch.device(device_options))
    tuned = tl.TimeSformer(options).double().eval()
    tuned.load_state_dict(ours.state_dict(), strict=True)
    video = torch.randn(2, cfg.num_frames, 3, cfg.img_size, cfg.img_size, dtype=torch.float64)
    with torch.no_grad():
        expected = hf(pixel_values=video).logits
        assert (tuned(video) - expected).abs().max().item() <= 1e-6
    assert (tl.fuse(ours)(video) - expected).abs().max().item() <= 1e-6
    assert expected.abs().max() > 1.0


def test_divided_spatial_attention_maps_equal_hf():
    torch.manual_seed(2)
    cfg = tl.ModelConfig(drop_path_rate=0.0, **CONFIGS[0])
    hf, ours = hf_and_ours(cfg, torch.float64, perturb=0.3)
    video = torch.randn(2, 4, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        hf_maps = hf(pixel_values=video, output_attentions=True).attentions  # per layer (B*T, heads, 1+N, 1+N)
        _, maps = ours(video, return_attention=True)
    for ours_layer, hf_layer in zip(maps.space, hf_maps):
        torch.testing.assert_close(ours_layer.flatten(0, 1), hf_layer, atol=1e-10, rtol=0)


# HF ViT parameter names per layer: transformers >= 5 (q_proj ...) and 4.x (attention.attention.query ...)
VIT_LAYER_NAMES = {
    "new": ("vit.layers.{i}.", "attention.{n}_proj", "attention.o_proj", "mlp.fc1", "mlp.fc2"),
    "old": (
        "vit.encoder.layer.{i}.",
        "attention.attention.{n}",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ),
}


def vit_to_ours(vit_state: dict, depth: int) -> dict:
    """Map HF ViT names onto ours (q, k, v concatenated into qkv) for the T=1 test."""
    out = {
        "cls_token": vit_state["vit.embeddings.cls_token"],
        "pos_embed": vit_state["vit.embeddings.position_embeddings"],
        "patch_embed.proj.weight": vit_state["vit.embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": vit_state["vit.embeddings.patch_embeddings.projection.bias"],
        "norm.weight": vit_state["vit.layernorm.weight"],
        "norm.bias": vit_state["vit.layernorm.bias"],
        "head.weight": vit_state["classifier.weight"],
        "head.bias": vit_state["classifier.bias"],
    }
    style = "new" if "vit.layers.0.layernorm_before.weight" in vit_state else "old"
    layer, qkv_name, proj, fc1, fc2 = VIT_LAYER_NAMES[style]
    short = (
        {"query": "q", "key": "k", "value": "v"}
        if style == "new"
        else {"query": "query", "key": "key", "value": "value"}
    )
    for i in range(depth):
        src = layer.format(i=i)
        for kind in ("weight", "bias"):
            qkv = [vit_state[f"{src}{qkv_name.format(n=short[n])}.{kind}"] for n in ("query", "key", "value")]
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(qkv, 0)
            out[f"blocks.{i}.attn.proj.{kind}"] = vit_state[f"{src}{proj}.{kind}"]
            out[f"blocks.{i}.norm1.{kind}"] = vit_state[f"{src}layernorm_before.{kind}"]
            out[f"blocks.{i}.norm2.{kind}"] = vit_state[f"{src}layernorm_after.{kind}"]
            out[f"blocks.{i}.mlp.fc1.{kind}"] = vit_state[f"{src}{fc1}.{kind}"]
            out[f"blocks.{i}.mlp.fc2.{kind}"] = vit_state[f"{src}{fc2}.{kind}"]
    return out


def test_one_frame_divided_timesformer_equals_a_plain_vit():
    """With T=1 the temporal step attends to itself and temporal_fc is zero: the model is the image ViT."""
    torch.manual_seed(3)
    vit_cfg = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=128,
        layer_norm_eps=1e-6,
        qkv_bias=True,
        num_labels=6,
    )
    vit = ViTForImageClassification(vit_cfg).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    cfg = tl.ModelConfig(img_size=32, patch_size=8, num_frames=1, embed_dim=32, depth=3, num_heads=4, num_classes=6)
    ours = tl.TimeSformer(cfg).eval()
    result = ours.load_state_dict(vit_to_ours(vit.state_dict(), 3), strict=False)
    assert sorted({k.split(".", 2)[-1].split(".")[0] for k in result.missing_keys}) == [
        "temporal_attn",
        "temporal_fc",
        "temporal_norm1",
        "time_embed",
    ]
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = vit(pixel_values=images).logits
        got = ours(images[:, None])
    assert (got - expected).abs().max().item() <= 1e-5
