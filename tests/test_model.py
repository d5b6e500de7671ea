"""The TimeSformer model: shapes for every scheme, fused == explicit attention, token layout, initialisation."""

import pytest
import torch
from einops import rearrange

import timesformer_lite as tl
from timesformer_lite.model import GROUPINGS, SCHEMES, Block
from timesformer_lite.model.blocks import axis_sizes
from timesformer_lite.utils import count_parameters, model_flops, seed_everything

SCHEME_NAMES = list(SCHEMES)


def tiny(attention_type="divided_space_time", **kw):
    base = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=16, depth=2, num_heads=2, num_classes=5)
    base.update(kw)
    return tl.ModelConfig(attention_type=attention_type, **base)


@pytest.mark.parametrize("attention_type", SCHEME_NAMES)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("frames", [1, 4, 8])
@pytest.mark.parametrize(("size", "patch"), [(32, 8), (48, 16), (64, 8), (224, 16)])
def test_logits_shape_for_every_scheme_batch_frames_and_size(attention_type, batch, frames, size, patch):
    torch.manual_seed(0)
    cfg = tiny(attention_type, img_size=size, patch_size=patch, embed_dim=8, depth=1)
    model = tl.TimeSformer(cfg).eval()
    with torch.no_grad():
        logits = model(torch.randn(batch, frames, 3, size, size))
    assert logits.shape == (batch, 5)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("attention_type", SCHEME_NAMES)
def test_other_frame_counts_and_sizes_than_the_config_work(attention_type):
    model = tl.TimeSformer(tiny(attention_type)).eval()
    with torch.no_grad():
        for T, H, W in [(2, 32, 32), (8, 48, 32), (6, 40, 56), (1, 16, 24)]:
            assert model(torch.randn(2, T, 3, H, W)).shape == (2, 5)


@pytest.mark.parametrize("attention_type", SCHEME_NAMES)
def test_fused_path_equals_explicit_path_and_rows_sum_to_one(attention_type):
    torch.manual_seed(1)
    model = tl.TimeSformer(tiny(attention_type)).double().eval()
    for p in model.parameters():  # move off the zero init so every step matters
        p.data.add_(torch.randn_like(p) * 0.2)
    video = torch.randn(2, 4, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        fused = model(video)
        explicit, maps = model(video, return_attention=True)
    torch.testing.assert_close(fused, explicit, atol=1e-10, rtol=0)
    steps = [s.grouping for s in SCHEMES[attention_type]]
    for name in steps:
        layers = getattr(maps, name)
        assert len(layers) == 2
        for probs in layers:
            assert (probs >= 0).all()
            torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
    assert maps.grid == (4, 4, 4)


def test_divided_maps_have_the_documented_shapes():
    model = tl.TimeSformer(tiny(num_heads=4, embed_dim=16)).eval()
    _, maps = model(torch.randn(3, 4, 3, 32, 32), return_attention=True)
    assert maps.space[0].shape == (3, 4, 4, 1 + 16, 1 + 16)  # (B, T, heads, 1+N, 1+N)
    assert maps.time[0].shape == (3, 16, 4, 4, 4)  # (B, N, heads, T, T)
    assert maps.joint == [] and len(maps) == 2


def test_joint_and_space_only_maps_shapes():
    _, joint = tl.TimeSformer(tiny("joint_space_time")).eval()(torch.randn(2, 4, 3, 32, 32), return_attention=True)
    assert joint.joint[0].shape == (2, 2, 1 + 4 * 16, 1 + 4 * 16)
    _, space = tl.TimeSformer(tiny("space_only")).eval()(torch.randn(2, 4, 3, 32, 32), return_attention=True)
    assert space.space[0].shape == (2, 4, 2, 17, 17) and space.time == []


def _marked_video(T, H, W, t, i, j, p):
    video = torch.zeros(1, T, 3, H, W)
    video[0, t, :, i * p : (i + 1) * p, j * p : (j + 1) * p] = 1.0
    return video


def test_marker_patch_lands_at_frame_t_and_row_major_patch_index():
    """A bright patch at frame t, grid cell (i, j) must become token x[b, t, i*w + j] and nothing else."""
    model = tl.TimeSformer(tiny(img_size=48, embed_dim=8, num_frames=3))
    T, h, w, p = 3, 6, 4, 8  # a non-square grid catches h/w mix-ups
    for t, i, j in [(0, 0, 0), (2, 5, 1), (1, 3, 3)]:
        tokens = model.patch_embed(_marked_video(T, h * p, w * p, t, i, j, p))  # (B, T, h, w, D)
        bias = model.patch_embed.proj.bias
        changed = ((tokens - bias).abs().sum(-1) > 1e-6).nonzero().tolist()
        assert changed == [[0, t, i, j]]
        x, _ = model.embed(_marked_video(T, h * p, w * p, t, i, j, p))  # (B, T, N, D)
        baseline, _ = model.embed(torch.zeros(1, T, 3, h * p, w * p))
        assert ((x - baseline).abs().sum(-1) > 1e-6).nonzero().tolist() == [[0, t, i * w + j]]


def test_every_grouping_puts_the_right_tokens_together():
    """Label every token with (t, i, j) and check each sequence holds exactly the tokens its scheme promises."""
    B, T, h, w = 2, 4, 6, 4
    t_idx, i_idx, j_idx = torch.meshgrid(torch.arange(T), torch.arange(h), torch.arange(w), indexing="ij")
    labels = torch.stack([t_idx, i_idx, j_idx], -1).reshape(1, T, h * w, 3).expand(B, -1, -1, -1).float()
    sizes = axis_sizes(B, T, h, w)

    def groups(name):
        pattern = GROUPINGS[name].pattern
        names = set(pattern.replace("(", " ").replace(")", " ").split())
        return rearrange(labels, pattern, **{k: v for k, v in sizes.items() if k in names}).long()

    time = groups("time")  # (B*N, T, 3): one patch position, frames in order
    assert time.shape == (B * h * w, T, 3)
    assert (time[:, :, 0] == torch.arange(T)).all() and (time[:, :, 1:] == time[:, :1, 1:]).all()
    assert time[5, 0, 1:].tolist() == [5 // w, 5 % w]
    space = groups("space")  # (B*T, N, 3): one frame
    assert (space[:, :, 0] == space[:, :1, 0]).all() and space.shape[1] == h * w
    width = groups("width")  # one row: same t and i, j = 0..w-1
    assert (width[:, :, :2] == width[:, :1, :2]).all() and (width[:, :, 2] == torch.arange(w)).all()
    height = groups("height")  # one column: same t and j, i = 0..h-1
    assert (height[:, :, 0::2] == height[:, :1, 0::2]).all() and (height[:, :, 1] == torch.arange(h)).all()
    local = groups("local")  # all frames of one quadrant of the grid
    assert local.shape == (B * 4, T * (h // 2) * (w // 2), 3)
    quadrant = (local[:, :, 1] // (h // 2)) * 2 + local[:, :, 2] // (w // 2)
    assert (quadrant == quadrant[:, :1]).all()
    sparse = groups("sparse")  # every second token along t, i and j
    assert sparse.shape == (B * 8, (T // 2) * (h // 2) * (w // 2), 3)
    parity = sparse % 2
    assert (parity == parity[:, :1]).all()
    assert len({tuple(p) for p in parity[:8, 0].tolist()}) == 8


def test_divided_block_at_init_equals_the_block_without_its_temporal_step():
    torch.manual_seed(0)
    divided = Block(16, 2, attention_type="divided_space_time").double()
    for name, p in divided.named_parameters():
        if not name.startswith("temporal_fc"):
            p.data.normal_(0, 0.3)
    divided.zero_added_steps()
    spatial = Block(16, 2, attention_type="space_only").double()
    missing = spatial.load_state_dict(divided.state_dict(), strict=False)
    assert missing.missing_keys == [] and all(k.startswith("temporal") for k in missing.unexpected_keys)
    x, cls = torch.randn(2, 3, 6, 16, dtype=torch.float64), torch.randn(2, 16, dtype=torch.float64)
    out_divided = divided(x, cls, (2, 3))
    out_spatial = spatial(x, cls, (2, 3))
    torch.testing.assert_close(out_divided[0], out_spatial[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(out_divided[1], out_spatial[1], atol=1e-12, rtol=0)
    divided.temporal_fc.weight.data.normal_()  # and the temporal step does matter once trained
    assert not torch.allclose(divided(x, cls, (2, 3))[0], out_spatial[0])


def test_reference_initialisation():
    model = tl.TimeSformer(tl.ModelConfig(depth=3, embed_dim=96, num_heads=4, num_classes=10))
    for blk in model.blocks:
        assert blk.temporal_fc.weight.abs().sum() == 0 and blk.temporal_fc.bias.abs().sum() == 0
    assert model.time_embed.abs().sum() == 0
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, torch.nn.Linear)])
    weights = weights[weights != 0]  # the zeroed temporal_fc
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.1)
    assert [b.drop_path.p for b in model.blocks] == pytest.approx([0.0, 0.05, 0.1])
    assert model.blocks[0].norm1.eps == 1e-6 and model.blocks[0].attn.qkv.bias is not None
    assert isinstance(model.blocks[0].mlp.act, torch.nn.GELU) and model.blocks[0].mlp.act.approximate == "none"


def test_position_and_time_embeddings_are_interpolated_nearest():
    model = tl.TimeSformer(tiny(num_frames=4))
    model.time_embed.data = torch.arange(4.0).view(1, 4, 1).expand(1, 4, 16).clone()
    assert model.time_embed_for(8)[:, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert model.time_embed_for(2)[:, 0].tolist() == [0, 2]
    grid = torch.arange(16.0).view(4, 4)
    model.pos_embed.data[0, 1:, :] = grid.flatten()[:, None]
    pos = model.pos_embed_for(8, 2)  # 4x4 grid -> 8 rows, 2 columns
    assert pos.shape == (1 + 16, 16)
    assert pos[1:, 0].view(8, 2).tolist() == grid.repeat_interleave(2, 0)[:, ::2].tolist()
    torch.testing.assert_close(pos[0], model.pos_embed[0, 0])


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = tl.TimeSformer(tiny(drop_path_rate=0.0)).double().train()
    video = torch.randn(2, 4, 3, 32, 32, dtype=torch.float64)
    model(video).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(video).sum().backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_drop_path_is_active_only_in_training():
    torch.manual_seed(0)
    model = tl.TimeSformer(tiny(drop_path_rate=0.5, depth=4))
    video = torch.randn(4, 4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(video), model(video))
        model.train()
        assert not torch.allclose(model(video), model(video))


def test_space_only_ignores_frame_order_and_divided_does_not():
    torch.manual_seed(0)
    video = torch.randn(2, 4, 3, 32, 32, dtype=torch.float64)
    reversed_video = video.flip(1)
    for attention_type, invariant in [("space_only", True), ("divided_space_time", False)]:
        model = tl.TimeSformer(tiny(attention_type)).double().eval()
        for p in model.parameters():
            p.data.add_(torch.randn_like(p) * 0.2)
        with torch.no_grad():
            same = torch.allclose(model(video), model(reversed_video), atol=1e-10)
        assert same is invariant


def test_bad_input_shapes_raise_clear_errors():
    model = tl.TimeSformer(tiny())
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        model(torch.randn(4, 3, 32, 32))
    with pytest.raises(ValueError, match="1 channels"):
        model(torch.randn(1, 4, 1, 32, 32))
    with pytest.raises(ValueError, match="smaller than one 8x8 patch"):
        model(torch.randn(1, 4, 3, 4, 32))


def test_base_parameter_counts_match_the_reference():
    """Official TimeSformer-B/16 with a 400-class head: divided 121.57M, joint and space-only 86.1M."""
    counts = {}
    for attention_type in SCHEME_NAMES:
        with torch.device("meta"):
            counts[attention_type] = count_parameters(tl.TimeSformer(tl.ModelConfig(attention_type=attention_type)))
    assert counts["divided_space_time"] == 121_566_352
    assert counts["joint_space_time"] == 86_112_400
    assert counts["space_only"] == 86_106_256  # no time embedding
    assert counts["sparse_local_global"] == 121_566_352  # paper: 121.4M, like divided
    assert counts["axial"] == 157_020_304  # paper: 156.8M


def test_flops_of_divided_8x224_match_the_arithmetic():
    """shared/reference/performance.md: 391.7 GFLOP per 8x224 view (195.8 G multiply-adds)."""
    assert model_flops(tl.ModelConfig()) / 1e9 == pytest.approx(391.7, rel=1e-3)
    joint = model_flops(tl.ModelConfig(attention_type="joint_space_time")) / 1e9
    space = model_flops(tl.ModelConfig(attention_type="space_only")) / 1e9
    assert space < joint and space < 391.7
    assert model_flops(tl.ModelConfig(), num_frames=16) == pytest.approx(2 * model_flops(tl.ModelConfig()), rel=0.02)


def test_seed_everything_makes_models_repeatable():
    seed_everything(3)
    a = tl.TimeSformer(tiny()).pos_embed.detach().clone()
    seed_everything(3)
    assert torch.equal(a, tl.TimeSformer(tiny()).pos_embed.detach())


def test_attended_patches_follow_the_scheme_definitions():
    from timesformer_lite.model.blocks import attended_patches

    T, h, w, q = 4, 4, 6, (1, 2, 3)
    divided = attended_patches("divided_space_time", T, h, w, q)
    assert divided["time"].sum() == T and divided["time"][:, 2, 3].all()
    assert divided["space"].sum() == h * w and divided["space"][1].all()
    assert attended_patches("joint_space_time", T, h, w, q)["joint"].all()
    axial = attended_patches("axial", T, h, w, q)
    assert axial["width"].sum() == w and axial["width"][1, 2].all()
    assert axial["height"].sum() == h and axial["height"][1, :, 3].all()
    sparse = attended_patches("sparse_local_global", T, h, w, q)
    assert sparse["local"].sum() == T * (h // 2) * (w // 2) and sparse["local"][:, 2:, 3:].all()
    assert sparse["sparse"].sum() == (T // 2) * (h // 2) * (w // 2) and sparse["sparse"][1::2, 0::2, 1::2].all()


def official_embedding(model: tl.TimeSformer, video: torch.Tensor, pos_drop, time_drop) -> torch.Tensor:
    """The tokens entering the blocks as facebookresearch/TimeSformer `vit.py` `forward_features` arranges them
    (shared/reference/implementations.md 1.1): one class token per frame, position embedding, `pos_drop` over
    all of it, the first B rows' class token kept, time embedding on the patches, `time_drop` over them.
    Returns (B, 1 + N*T, D) in its `b (n t) m` order, or (B*T, 1+N, D) for space_only."""
    B, T = video.shape[:2]
    x = model.patch_embed.proj(video.flatten(0, 1)).flatten(2).transpose(1, 2)  # (B*T, N, D)
    x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + model.pos_embed
    x = pos_drop(x)
    if model.cfg.attention_type == "space_only":
        return x
    cls = x[:B, 0].unsqueeze(1)
    x = rearrange(x[:, 1:], "(b t) n m -> (b n) t m", b=B, t=T)
    x = time_drop(x + model.time_embed)
    return torch.cat([cls, rearrange(x, "(b n) t m -> b (n t) m", b=B, t=T)], dim=1)


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time", "space_only"])
def test_dropout_sits_where_the_official_code_has_it(attention_type):
    """Seeded dropout masks (one per Dropout module, over the channels, so they do not depend on the token
    layout) applied at our two places and at the official ones give the same tokens."""
    torch.manual_seed(0)
    model = tl.TimeSformer(tiny(attention_type, drop_rate=0.5, init_std=0.2)).double().eval()
    with torch.no_grad():
        if model.time_embed is not None:
            model.time_embed.normal_()
        gen = torch.Generator().manual_seed(1)
        masks = [torch.bernoulli(torch.full((16,), 0.5), generator=gen).double() / 0.5 for _ in range(2)]
        for module, mask in zip((model.pos_drop, model.time_drop), masks):
            if module is not None:
                module.register_forward_hook(lambda m, args, out, mask=mask: out * mask)
        video = torch.randn(2, 4, 3, 32, 32, dtype=torch.float64)
        x, cls = model.embed(video)
        official = official_embedding(model, video, lambda t: t * masks[0], lambda t: t * masks[1])
    if attention_type == "space_only":  # every frame its own image: (B*T, 1, N, D) and (B*T, D)
        want_x, want_cls = official[:, 1:].unsqueeze(1), official[:, 0]
    else:
        want_x, want_cls = rearrange(official[:, 1:], "b (n t) m -> b t n m", t=4), official[:, 0]
    torch.testing.assert_close(x, want_x, atol=1e-12, rtol=0)
    torch.testing.assert_close(cls, want_cls, atol=1e-12, rtol=0)
    assert (x == 0).any() and (cls == 0).any()  # the masks did drop something from both


def test_in_training_every_frames_class_token_of_space_only_gets_its_own_dropout_mask():
    model = tl.TimeSformer(tiny("space_only", drop_rate=0.5)).train()
    torch.manual_seed(0)
    _, cls = model.embed(torch.randn(1, 4, 3, 32, 32))  # (B*T, D): one class token per frame
    assert cls.shape == (4, 16) and len({tuple((row == 0).tolist()) for row in cls}) > 1
