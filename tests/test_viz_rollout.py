"""Attention rollout: exact values on hand-built attention, row-stochastic matrices, real-model maps."""

from __future__ import annotations

import pytest
import torch

import timesformer_lite as tl
from timesformer_lite.viz import attention_rollout, layer_matrices, rollout_matrix, step_matrix

GRIDS = [(4, 2, 3), (1, 3, 2), (3, 1, 1), (2, 4, 4), (1, 1, 1)]  # (T, h, w): non-square, T=1, one patch


def eye_maps(scheme: str, grid: tuple[int, int, int], B: int = 2, heads: int = 2, depth: int = 2) -> tl.AttentionMaps:
    """Maps where every token attends only to itself, shaped as the model returns them."""
    T, h, w = grid
    N = h * w

    def eye(*lead: int, L: int) -> torch.Tensor:
        return torch.eye(L).expand(*lead, heads, L, L).clone()

    maps = tl.AttentionMaps(grid=grid)
    for _ in range(depth):
        if scheme in ("divided_space_time", "space_only"):
            maps.space.append(eye(B, T, L=1 + N))
        if scheme == "divided_space_time":
            maps.time.append(eye(B, N, L=T))
        if scheme == "joint_space_time":
            maps.joint.append(eye(B, L=1 + T * N))
    return maps


def tiny_model(attention_type: str = "divided_space_time", **kw) -> tl.TimeSformer:
    torch.manual_seed(0)
    cfg = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=5)
    return tl.TimeSformer(**{**cfg, **kw}, attention_type=attention_type, init_std=0.5).eval()


def real_maps(attention_type: str, T: int = 3, H: int = 32, W: int = 48, B: int = 2) -> tl.AttentionMaps:
    torch.manual_seed(1)
    with torch.no_grad():
        _, maps = tiny_model(attention_type)(torch.randn(B, T, 3, H, W), return_attention=True)
    return maps


@pytest.mark.parametrize("scheme", ["divided_space_time", "joint_space_time", "space_only"])
@pytest.mark.parametrize("grid", GRIDS)
def test_identity_attention_leaves_the_class_token_alone_and_gives_an_all_zero_map(scheme, grid):
    maps = eye_maps(scheme, grid)
    T, h, w = grid
    R = rollout_matrix(maps)
    assert torch.equal(R, torch.eye(R.shape[-1]).expand_as(R))  # nothing mixes: R = I, class row e0
    for normalize in (False, True):
        assert torch.equal(attention_rollout(maps, normalize=normalize), torch.zeros(2, T, h, w))


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("depth", [1, 3])
def test_class_token_attending_uniformly_in_space_gives_a_uniform_map_with_the_exact_mass(grid, depth):
    T, h, w = grid
    N = h * w
    maps = eye_maps("divided_space_time", grid, depth=depth)
    for probs in maps.space:
        probs[..., 0, :] = 1.0 / (1 + N)  # each frame's class copy spreads evenly over [cls, its N patches]
    keep = 0.5 + 0.5 / (1 + N)  # per layer, the class row's weight on itself (0.5*A + 0.5*I)
    raw = attention_rollout(maps, normalize=False)
    torch.testing.assert_close(raw, torch.full((2, T, h, w), (1 - keep**depth) / (T * N)))
    torch.testing.assert_close(attention_rollout(maps), torch.full((2, T, h, w), 1.0 / (T * N)))


@pytest.mark.parametrize("grid,target", [((4, 2, 3), (2, 1, 0)), ((1, 3, 2), (0, 2, 1)), ((3, 2, 2), (0, 0, 1))])
def test_class_token_pointing_at_one_patch_of_one_frame_peaks_there(grid, target):
    T, h, w = grid
    t, i, j = target
    maps = eye_maps("divided_space_time", grid, depth=2)
    probs = maps.space[1][0, t, :, 0]  # clip 0, layer 1, frame t: the class copy's row, all heads
    probs.zero_()
    probs[:, 1 + i * w + j] = 1.0
    raw = attention_rollout(maps, normalize=False)
    expected = torch.zeros(2, T, h, w)
    expected[0, t, i, j] = 0.5 / T  # half the copy's row (residual), one of T averaged copies
    torch.testing.assert_close(raw, expected)
    assert attention_rollout(maps)[0, t, i, j] == 1.0


def test_time_runs_before_space_within_a_divided_layer():
    T, h, w = 3, 2, 2
    maps = eye_maps("divided_space_time", (T, h, w), depth=1)
    n, t0, t1 = 3, 0, 2
    maps.time[0][:, n, :, t1] = torch.eye(T)[t0]  # patch n of frame t1 takes everything from frame t0
    maps.space[0][:, t1, :, 0] = torch.eye(1 + h * w)[1 + n]  # class copy of frame t1 reads patch n
    raw = attention_rollout(maps, normalize=False)
    expected = torch.zeros(2, T, h, w)
    expected[:, t1, n // w, n % w] = 0.25 / T  # space (0.5/T) then that patch's time row (0.5 self, 0.5 t0)
    expected[:, t0, n // w, n % w] = 0.25 / T  # the other order would leave frame t0 at zero
    torch.testing.assert_close(raw, expected)


def test_joint_class_token_pointing_at_one_patch_peaks_there():
    T, h, w = 2, 3, 2
    maps = eye_maps("joint_space_time", (T, h, w), depth=2)
    maps.joint[0][1, :, 0] = torch.eye(1 + T * h * w)[1 + 1 * h * w + 2 * w + 1]  # clip 1 -> patch (1, 2, 1)
    raw = attention_rollout(maps, normalize=False)
    expected = torch.zeros(2, T, h, w)
    expected[1, 1, 2, 1] = 0.5
    torch.testing.assert_close(raw, expected)


def reference_divided_layer(space: torch.Tensor, time: torch.Tensor, T: int, N: int) -> torch.Tensor:
    """The divided layer matrix built entry by entry from the rules in the rollout docstring (clip 0)."""
    At = time[0].mean(1) * 0.5 + 0.5 * torch.eye(T)  # (N, T, T)
    As = space[0].mean(1) * 0.5 + 0.5 * torch.eye(1 + N)  # (T, 1+N, 1+N)
    Mt, Ms = torch.zeros(1 + T * N, 1 + T * N), torch.zeros(1 + T * N, 1 + T * N)
    Mt[0, 0] = 1.0
    Ms[0, 0] = As[:, 0, 0].mean()
    for t in range(T):
        for n in range(N):
            Ms[0, 1 + t * N + n] = As[t, 0, 1 + n] / T
            Ms[1 + t * N + n, 0] = As[t, 1 + n, 0]
            for s in range(T):
                Mt[1 + t * N + n, 1 + s * N + n] = At[n, t, s]
            for m in range(N):
                Ms[1 + t * N + n, 1 + t * N + m] = As[t, 1 + n, 1 + m]
    return Ms @ Mt


def test_divided_layer_matrices_match_an_entry_by_entry_reference_on_real_maps():
    maps = real_maps("divided_space_time", T=3, H=16, W=24)
    T, h, w = maps.grid
    mats = layer_matrices(maps)
    for layer in range(2):
        ref = reference_divided_layer(maps.space[layer], maps.time[layer], T, h * w)
        torch.testing.assert_close(mats[layer][0], ref)


SCHEMES = ["divided_space_time", "joint_space_time", "space_only", "axial", "sparse_local_global"]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("head", ["mean", "max", 1])
def test_every_step_layer_and_rollout_matrix_is_row_stochastic(scheme, head):
    maps = real_maps(scheme, T=4, H=32, W=32)
    T, h, w = maps.grid
    grid = (1, h, w) if scheme == "space_only" else (T, h, w)
    steps = [("space", p) for p in maps.space] + [("time", p) for p in maps.time] + [("joint", p) for p in maps.joint]
    steps += [(k, p) for k in ("width", "height", "local", "sparse") for p in getattr(maps, k)]
    for grouping, probs in steps:
        if scheme == "space_only":
            probs = probs.flatten(0, 1)[:, None]
        M = step_matrix(probs, grouping, grid, head)
        assert (M >= 0).all()
        torch.testing.assert_close(M.sum(-1), torch.ones(M.shape[:2]))
    for M in [*layer_matrices(maps, head), rollout_matrix(maps, head)]:
        torch.testing.assert_close(M.sum(-1), torch.ones(M.shape[:2]))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rollout_map_of_a_real_model_is_the_class_row_of_the_rollout_matrix(scheme):
    maps = real_maps(scheme, T=4, H=32, W=32)
    T, h, w = maps.grid
    rel = attention_rollout(maps)
    R = rollout_matrix(maps)
    row = R[:, 0, 1:]
    if scheme == "space_only":  # one-frame clips; the final class token averages them
        row = row.reshape(2, T * h * w)
    row = row / row.sum(-1, keepdim=True)
    torch.testing.assert_close(rel.reshape(2, -1), row)


@pytest.mark.parametrize("scheme", ["divided_space_time", "joint_space_time", "space_only"])
@pytest.mark.parametrize("T,H,W", [(3, 32, 48), (1, 24, 16), (2, 8, 8)])
def test_rollout_of_a_real_model_is_a_distribution_over_the_clip(scheme, T, H, W):
    maps = real_maps(scheme, T=T, H=H, W=W, B=3)
    rel = attention_rollout(maps)
    assert rel.shape == (3, T, H // 8, W // 8)
    assert (rel >= 0).all()
    torch.testing.assert_close(rel.sum(dim=(1, 2, 3)), torch.ones(3))
    assert rel.std() > 0 or rel.numel() == 3  # a random model does not attend evenly (one patch: trivially 1)


def test_space_only_averages_the_rollouts_of_its_frames():
    maps = real_maps("space_only", T=3, H=16, W=16)
    T, h, w = maps.grid
    raw = attention_rollout(maps, normalize=False)
    for t in range(T):
        R = torch.eye(1 + h * w).expand(2, -1, -1)
        for probs in maps.space:
            R = (0.5 * probs[:, t].mean(1) + 0.5 * torch.eye(1 + h * w)) @ R
        torch.testing.assert_close(raw[:, t], R[:, 0, 1:].reshape(2, h, w) / T)


def test_num_layers_rolls_out_a_prefix_of_the_layers():
    maps = real_maps("divided_space_time", T=2, H=16, W=16)
    torch.testing.assert_close(rollout_matrix(maps, num_layers=1), layer_matrices(maps)[0])
    first = attention_rollout(maps, num_layers=1)
    torch.testing.assert_close(
        first.flatten(1), layer_matrices(maps)[0][:, 0, 1:] / (1 - layer_matrices(maps)[0][:, 0, :1])
    )


def test_bad_arguments_raise_errors_that_name_the_fix():
    maps = real_maps("divided_space_time", T=2, H=16, W=16)
    with pytest.raises(ValueError, match="num_layers=3 is out of range"):
        attention_rollout(maps, num_layers=3)
    with pytest.raises(ValueError, match="not None"):
        attention_rollout(maps, head=None)
    with pytest.raises(ValueError, match="head=2 is out of range"):
        attention_rollout(maps, head=2)
    with pytest.raises(ValueError, match="match no scheme"):
        attention_rollout(tl.AttentionMaps(space=maps.space, joint=maps.space, grid=maps.grid))
