"""Attention-map helpers: layout on the (T, h, w) grid proven with marker values, head fusion, errors."""

from __future__ import annotations

import pytest
import torch

import timesformer_lite as tl
from timesformer_lite.viz import (
    cls_space_map,
    fuse_heads,
    joint_query_map,
    scheme_of,
    space_query_map,
    time_matrix,
    time_query_map,
)

B, HEADS = 2, 3


def marker_maps(T: int, h: int, w: int) -> tuple[tl.AttentionMaps, tl.AttentionMaps]:
    """Divided and joint maps whose entries encode their indices: a misplaced reshape gives a wrong number."""
    N = h * w
    key = torch.arange(1 + N, dtype=torch.float32)  # space key token k has value k
    space = key.expand(B, T, HEADS, 1 + N, 1 + N) + 1000 * torch.arange(T).view(1, T, 1, 1, 1)
    space = space + 100 * torch.arange(1 + N).view(1, 1, 1, 1 + N, 1)  # query token q adds 100*q
    time = torch.arange(T, dtype=torch.float32).expand(B, N, HEADS, T, T) + 10 * torch.arange(T).view(1, 1, 1, T, 1)
    time = time + 1000 * torch.arange(N).view(1, N, 1, 1, 1)  # position n adds 1000*n, query frame 10*q
    joint = torch.arange(1 + T * N, dtype=torch.float32).expand(B, HEADS, 1 + T * N, 1 + T * N)
    joint = joint + 10000 * torch.arange(1 + T * N).view(1, 1, -1, 1)
    return tl.AttentionMaps(space=[space], time=[time], grid=(T, h, w)), tl.AttentionMaps(joint=[joint], grid=(T, h, w))


@pytest.mark.parametrize("T,h,w", [(3, 2, 4), (1, 3, 2)])
def test_cls_space_map_puts_patch_i_j_of_frame_t_at_t_i_j(T, h, w):
    maps, _ = marker_maps(T, h, w)
    out = cls_space_map(maps, 0)
    assert out.shape == (B, T, h, w)
    t, i, j = T - 1, h - 1, 1
    assert out[1, t, i, j] == 1000 * t + 1 + i * w + j


@pytest.mark.parametrize("T,h,w", [(3, 2, 4), (2, 3, 3)])
def test_space_query_map_reads_the_query_patch_row_of_its_frame(T, h, w):
    maps, _ = marker_maps(T, h, w)
    out = space_query_map(maps, 0, frame=1, row=1, col=2)
    assert out.shape == (B, h, w)
    q = 1 + 1 * w + 2
    assert out[0, h - 1, 0] == 1000 + 100 * q + 1 + (h - 1) * w


def test_time_matrix_and_time_query_map_index_the_patch_position_and_the_query_frame():
    T, h, w = 4, 2, 3
    maps, _ = marker_maps(T, h, w)
    n = 1 * w + 2
    mat = time_matrix(maps, 0, row=1, col=2)
    assert mat.shape == (B, T, T)
    assert mat[0, 3, 1] == 1000 * n + 10 * 3 + 1
    grid = time_query_map(maps, 0, frame=2)
    assert grid.shape == (B, T, h, w)
    assert grid[1, 0, 1, 2] == 1000 * n + 10 * 2 + 0  # key frame 0 at patch (1, 2)


def test_joint_query_map_uses_the_t_n_token_order():
    T, h, w = 2, 2, 3
    _, maps = marker_maps(T, h, w)
    cls = joint_query_map(maps, 0)
    assert cls.shape == (B, T, h, w)
    assert cls[0, 1, 0, 2] == 1 + 1 * h * w + 2
    q = 1 + 1 * h * w + 1 * w + 0
    patch = joint_query_map(maps, 0, query=(1, 1, 0))
    assert patch[0, 0, 1, 1] == 10000 * q + 1 + 1 * w + 1


def test_head_fusion_mean_max_select_and_keep():
    probs = torch.rand(2, 4, 3, 3)
    torch.testing.assert_close(fuse_heads(probs, "mean"), probs.mean(1))
    torch.testing.assert_close(fuse_heads(probs, "max"), probs.max(1).values)
    torch.testing.assert_close(fuse_heads(probs, 2), probs[:, 2])
    assert fuse_heads(probs, None) is probs
    maps, _ = marker_maps(3, 2, 2)
    assert cls_space_map(maps, 0, head=None).shape == (B, HEADS, 3, 2, 2)
    assert time_query_map(maps, 0, frame=0, head=None).shape == (B, HEADS, 3, 2, 2)


def test_maps_of_a_real_model_are_probabilities_on_the_grid():
    torch.manual_seed(0)
    model = tl.TimeSformer(img_size=32, patch_size=8, num_frames=2, embed_dim=16, depth=2, num_heads=2).eval()
    with torch.no_grad():
        _, maps = model(torch.randn(1, 2, 3, 24, 40), return_attention=True)
    assert scheme_of(maps) == "divided_space_time"
    assert cls_space_map(maps, -1).shape == (1, 2, 3, 5)
    cls_share = maps.space[1][:, :, :, 0, 0].mean(2)  # (B, T): the copy's weight on itself
    torch.testing.assert_close(cls_space_map(maps, 1).sum(dim=(2, 3)), 1 - cls_share)
    torch.testing.assert_close(time_query_map(maps, 0, frame=1).sum(1), torch.ones(1, 3, 5))


def test_bad_requests_name_the_problem():
    maps, joint = marker_maps(2, 2, 2)
    with pytest.raises(ValueError, match="joint_space_time model, which has no space attention"):
        cls_space_map(joint, 0)
    with pytest.raises(ValueError, match=r"layer=1 is out of range: the maps have 1 layers \(0..0\)"):
        cls_space_map(maps, 1)
    with pytest.raises(ValueError, match="outside the 2x2 patch grid"):
        time_matrix(maps, 0, row=2, col=0)
    with pytest.raises(ValueError, match="frame=2 is out of range"):
        space_query_map(maps, 0, frame=2, row=0, col=0)
    with pytest.raises(ValueError, match="head='median' is not understood"):
        cls_space_map(maps, 0, head="median")
