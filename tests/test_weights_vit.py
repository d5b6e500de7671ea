"""ImageNet ViT initialisation: an HF ViT, the same weights in timm names and as Google's .npz all inflate
into a TimeSformer that computes the ViT exactly (T=1, or T frames of one image), with every added step a
no-op until training moves its zero `*_fc`.

The timm and npz files are written here from the HF ViT with the layouts docs/weights.md documents.
"""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import ViTConfig, ViTForImageClassification

from timesformer_lite.weights import WeightsError, detect, load_pretrained

D, HEADS, DEPTH, SIZE, PATCH, CLASSES = 32, 2, 2, 32, 8, 5


def hf_vit(seed: int = 0) -> ViTForImageClassification:
    torch.manual_seed(seed)
    cfg = ViTConfig(
        hidden_size=D, num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=4 * D,
        image_size=SIZE, patch_size=PATCH, num_labels=CLASSES, layer_norm_eps=1e-6, hidden_act="gelu",
        qkv_bias=True,
    )  # fmt: skip
    vit = ViTForImageClassification(cfg).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return vit.double()  # float32 values held in float64: loading into float32 parameters rounds nothing


def timm_state(vit: ViTForImageClassification) -> dict[str, torch.Tensor]:
    """HF ViT (transformers 5.x in-memory names) -> timm names: fused qkv = [q; k; v] rows."""
    s = {k.removeprefix("vit."): v for k, v in vit.state_dict().items()}
    out = {
        "cls_token": s["embeddings.cls_token"],
        "pos_embed": s["embeddings.position_embeddings"],
        "patch_embed.proj.weight": s["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": s["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": s["layernorm.weight"],
        "norm.bias": s["layernorm.bias"],
        "head.weight": s["classifier.weight"],
        "head.bias": s["classifier.bias"],
    }
    for i in range(DEPTH):
        h, t = f"layers.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [s[f"{h}attention.{p}_proj.{kind}"] for p in ("q", "k", "v")]
            out[f"{t}attn.qkv.{kind}"] = torch.cat(qkv)
            for hf_name, timm_name in [
                ("layernorm_before", "norm1"), ("attention.o_proj", "attn.proj"), ("layernorm_after", "norm2"),
                ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"),
            ]:  # fmt: skip
                out[f"{t}{timm_name}.{kind}"] = s[f"{h}{hf_name}.{kind}"]
    return {k: v.contiguous() for k, v in out.items()}


def npz_arrays(vit: ViTForImageClassification) -> dict[str, np.ndarray]:
    """HF ViT -> Google's layout: flax kernels are (in, out); q/k/v (D, heads, d); out (heads, d, D); conv HWIO."""
    s = {k.removeprefix("vit."): v.numpy() for k, v in vit.state_dict().items()}
    d = D // HEADS
    out = {
        "cls": s["embeddings.cls_token"],
        "Transformer/posembed_input/pos_embedding": s["embeddings.position_embeddings"],
        "embedding/kernel": s["embeddings.patch_embeddings.projection.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": s["embeddings.patch_embeddings.projection.bias"],
        "Transformer/encoder_norm/scale": s["layernorm.weight"],
        "Transformer/encoder_norm/bias": s["layernorm.bias"],
        "head/kernel": s["classifier.weight"].T,
        "head/bias": s["classifier.bias"],
    }
    for i in range(DEPTH):
        h, g = f"layers.{i}.", f"Transformer/encoderblock_{i}/"
        mha = g + "MultiHeadDotProductAttention_1/"
        for p in ("query", "key", "value"):
            out[f"{mha}{p}/kernel"] = s[f"{h}attention.{p[0]}_proj.weight"].T.reshape(D, HEADS, d)
            out[f"{mha}{p}/bias"] = s[f"{h}attention.{p[0]}_proj.bias"].reshape(HEADS, d)
        out[f"{mha}out/kernel"] = s[f"{h}attention.o_proj.weight"].T.reshape(HEADS, d, D)
        out[f"{mha}out/bias"] = s[f"{h}attention.o_proj.bias"]
        for flax, hf in (("LayerNorm_0", "layernorm_before"), ("LayerNorm_2", "layernorm_after")):
            out[f"{g}{flax}/scale"], out[f"{g}{flax}/bias"] = s[f"{h}{hf}.weight"], s[f"{h}{hf}.bias"]
        for dense, hf in (("Dense_0", "mlp.fc1"), ("Dense_1", "mlp.fc2")):
            out[f"{g}MlpBlock_3/{dense}/kernel"] = s[f"{h}{hf}.weight"].T
            out[f"{g}MlpBlock_3/{dense}/bias"] = s[f"{h}{hf}.bias"]
    return out


@pytest.fixture(scope="module")
def vit_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vit")
    vit = hf_vit()
    vit.save_pretrained(root / "hf_vit")
    save_file(timm_state(vit), root / "timm.safetensors")
    torch.save({"model": timm_state(vit)}, root / "timm.pth")
    np.savez(root / "vit.npz", **npz_arrays(vit))
    torch.save(vit.state_dict(), root / "hf_vit_in_memory.bin")
    return vit, {
        "hf_vit": (root / "hf_vit", {}),  # save_pretrained writes the Hub names
        "hf_vit-bin": (root / "hf_vit_in_memory.bin", {"num_heads": HEADS, "layer_norm_eps": 1e-6}),
        "timm": (root / "timm.safetensors", {"num_heads": HEADS}),
        "timm-pth": (root / "timm.pth", {"num_heads": HEADS}),
        "vit_npz": (root / "vit.npz", {}),  # the npz kernels record the heads
    }


ROUTES = ["hf_vit", "hf_vit-bin", "timm", "timm-pth", "vit_npz"]


@pytest.mark.parametrize("route", ROUTES)
def test_inflated_model_with_one_frame_is_the_vit(vit_files, route):
    vit, files = vit_files
    path, extra = files[route]
    assert detect(path) == route.split("-")[0]
    model = load_pretrained(path, num_frames=1, keep_vit_head=True, **extra).double()
    assert model.cfg.num_heads == HEADS and model.cfg.layer_norm_eps == 1e-6
    assert model.load_report.ok
    images = torch.randn(3, 3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        expected = vit(pixel_values=images).logits
        assert expected.abs().max() > 1.0
        assert (model(images[:, None]) - expected).abs().max().item() <= 1e-10


@pytest.mark.parametrize("route", ["hf_vit", "vit_npz"])
def test_inflated_model_on_eight_copies_of_an_image_gives_the_vit_logits(vit_files, route):
    vit, files = vit_files
    path, extra = files[route]
    model = load_pretrained(path, num_frames=8, keep_vit_head=True, **extra).double()
    assert model.time_embed.shape == (1, 8, D) and not model.time_embed.any()
    images = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        got = model(images[:, None].expand(2, 8, 3, SIZE, SIZE))
        assert (got - vit(pixel_values=images).logits).abs().max().item() <= 1e-10


@pytest.mark.parametrize("scheme", ["divided_space_time", "axial", "sparse_local_global"])
def test_every_added_step_is_a_copy_of_the_spatial_one_and_a_no_op(vit_files, scheme):
    path, extra = vit_files[1]["hf_vit"]
    model = load_pretrained(path, attention_type=scheme, num_frames=4, num_classes=3).double()
    assert model.head.weight.shape == (3, D) and model.load_report.new_head
    for blk in model.blocks:
        added = [s for s in blk.steps if not s.with_cls]
        assert added
        for step in added:
            for name, p in getattr(blk, f"{step.prefix}attn").state_dict().items():
                assert torch.equal(p, blk.attn.state_dict()[name])
            assert torch.equal(getattr(blk, f"{step.prefix}norm1").weight, blk.norm1.weight)
            assert not getattr(blk, f"{step.prefix}fc").weight.any()
        # the block equals its last (image ViT) step followed by the MLP, with the added steps skipped
        x = torch.randn(2, 4, (SIZE // PATCH) ** 2, D, dtype=torch.float64)
        cls = torch.randn(2, D, dtype=torch.float64)
        with torch.no_grad():
            y, c, _ = blk(x, cls, (SIZE // PATCH, SIZE // PATCH))
            x2, c2, _ = blk.attend(blk.steps[-1], x, cls, (SIZE // PATCH, SIZE // PATCH), False)
            assert torch.allclose(y, x2 + blk.mlp(blk.norm2(x2)), atol=1e-12, rtol=0)
            assert torch.allclose(c, c2 + blk.mlp(blk.norm2(c2)), atol=1e-12, rtol=0)


def test_vit_head_is_replaced_unless_asked_to_keep_it(vit_files):
    path, extra = vit_files[1]["vit_npz"]
    model = load_pretrained(path)
    assert model.load_report.new_head and model.classes is None
    assert model.load_report.keys["blocks.0.temporal_fc.weight"] == "inflated: zero"
    assert model.load_report.keys["blocks.1.temporal_attn.qkv.weight"].startswith("inflated: copy of blocks.1.attn")
    assert "attention_type='divided_space_time' assumed" in str(model.load_report)
    kept = load_pretrained(path, keep_vit_head=True)
    assert kept.cfg.num_classes == CLASSES and kept.load_report.keys["head.weight"] == "loaded"
    assert load_pretrained(path, keep_vit_head=False).load_report.keys["head.weight"] == "new (initialised)"
    assert load_pretrained(path, keep_vit_head=True, num_classes=3).load_report.new_head  # an explicit count wins


def test_npz_extras_are_reported_not_dropped(vit_files, tmp_path):
    vit, _ = vit_files
    arrays = npz_arrays(vit)
    arrays["pre_logits/kernel"] = np.zeros((D, D), np.float32)  # the ImageNet-21k representation layer
    np.savez(tmp_path / "in21k.npz", **arrays)
    with pytest.raises(WeightsError, match=r"unexpected: pre_logits/kernel.*strict=False"):
        load_pretrained(tmp_path / "in21k.npz")
    model = load_pretrained(tmp_path / "in21k.npz", strict=False)
    assert model.load_report.unexpected == ["pre_logits/kernel"]
