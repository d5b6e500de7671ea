"""Attention rollout (Abnar & Zuidema, 2020) for every TimeSformer scheme, divided attention first.

Which patches of which frames did the class token's final value come from? Rollout answers by treating
each attention step as a token-mixing matrix and multiplying them.

Tokens. A clip has 1 + T*N tokens: the class token (index 0) and the patch tokens ordered (t, n), n
row-major over the (h, w) grid, so patch (t, i, j) has index 1 + t*N + i*w + j.

One step. A step attends within sequences (time: a patch position across frames; space: a frame with
a copy of the class token; joint: the whole clip; ...). With its probabilities A (heads fused by
mean, max or a chosen head) and the residual connection x + attn(norm(x)), the step mixes tokens by

    A_hat = (A + I) / rowsum(A + I)          (= 0.5*A + 0.5*I when heads are averaged or selected)

placed into a (1+T*N) x (1+T*N) matrix M:
- a patch row holds its sequence's A_hat row at the tokens of that sequence;
- a step that skips the class token (temporal, width, local) leaves it alone: M[0, 0] = 1;
- a step that includes it (space, height, sparse) gives it a copy in each of the S sequences of a clip
  and averages the copies' outputs back, so the class row is the mean of the S copies' A_hat rows,
  and a patch row's class column (A_hat[patch, copy]) points to the one class token.
Every row of M sums to 1, so every product of such matrices is row-stochastic too. Like the original
method, rollout tracks only which tokens are mixed: value projections, `temporal_fc` and the MLPs
(which act on each token alone) are left out.

Composition. Token values after a step are M @ (values before), so a divided layer is
M_layer = M_space @ M_time (time runs first) and the clip is R = M_layer[L-1] @ ... @ M_layer[0].
The map is R[0, 1:], the class row without its own entry, reshaped to (T, h, w). It sums to
1 - R[0, 0]; `attention_rollout` rescales it to sum to 1 unless normalize=False. It reads the class
row as a vector-matrix product from the last step back (e0 @ R), never forming R for big clips.

Other schemes use the same rules: joint is one step per layer; axial is height @ width @ time;
sparse_local_global is sparse @ local. space_only has one class token per frame and averages them at
the end, so each frame is rolled out as its own one-frame clip and the frames' maps are averaged.

Identity attention (every token attends only to itself) gives M = I at every step: the class row is
e0, the map is all zeros (nothing flowed from the patches) and stays zero when normalised.

Built in notebooks/08_attention_maps.ipynb.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from ..model import GROUPINGS, SCHEMES, AttentionMaps
from ..model.blocks import lengths
from .maps import Head, fuse_heads, scheme_of


def token_index(grouping: str, grid: tuple[int, int, int], device: torch.device | None = None) -> Tensor:
    """(S, L): for each sequence of a grouping in one clip, the clip token index of its patches (1 + t*N + n).

    The model's own einops pattern builds it, so rollout cannot disagree with the model on token order.
    """
    T, h, w = grid
    pattern = GROUPINGS[grouping].pattern
    tokens = 1 + torch.arange(T * h * w, device=device).reshape(1, T, h * w, 1)  # (b=1, T, N, d=1)
    return rearrange(tokens, pattern, **lengths(pattern, 1, T, h, w))[..., 0]


def step_matrix(probs: Tensor, grouping: str, grid: tuple[int, int, int], head: Head = "mean") -> Tensor:
    """The token-mixing matrix of one attention step, residual included; every row sums to 1.

    Args:
        probs: the step's probabilities as `AttentionMaps` holds them, (B, *groups, heads, L, L), with
            L counting a leading class-token copy where the step has one.
        grouping: the step's grouping name ("time", "space", "joint", ...).
        grid: (T, h, w) of the clip.
        head: "mean" or "max" over heads, or a head index.
    Returns:
        (B, 1+T*N, 1+T*N).
    """
    if head is None:
        raise ValueError("rollout needs one matrix per step: pass head='mean', 'max' or a head index, not None")
    T, h, w = grid
    B = probs.shape[0]
    idx = token_index(grouping, grid, probs.device)  # (S, L)
    S, L = idx.shape
    dtype = torch.promote_types(probs.dtype, torch.float32)
    A = fuse_heads(probs.reshape(B, S, *probs.shape[-3:]).to(dtype), head, dim=2)  # (B, S, L', L')
    with_cls = A.shape[-1] == L + 1
    if A.shape[-1] not in (L, L + 1):
        raise ValueError(f"{grouping} probabilities of shape {tuple(probs.shape)} do not fit a {T}x{h}x{w} clip")
    A = A + torch.eye(A.shape[-1], dtype=dtype, device=A.device)  # the residual connection
    A = A / A.sum(dim=-1, keepdim=True)
    M = torch.zeros(B, 1 + T * h * w, 1 + T * h * w, dtype=dtype, device=A.device)
    rows, cols = idx[:, :, None].expand(S, L, L), idx[:, None, :].expand(S, L, L)
    if not with_cls:
        M[:, 0, 0] = 1.0  # the class token does not take part in this step
        M[:, rows, cols] = A
        return M
    M[:, rows, cols] = A[..., 1:, 1:]
    M[:, idx, 0] = A[..., 1:, 0]  # every copy of the class token is the one class token
    M[:, 0, 0] = A[..., 0, 0].mean(dim=1)  # the S copies' outputs are averaged back
    M[:, 0, idx] = A[..., 0, 1:] / S
    return M


def _clip_layers(maps: AttentionMaps) -> tuple[list[list[tuple[str, Tensor]]], tuple[int, int, int]]:
    """Per layer, the (grouping, probs) of each step in the order they run, and the grid of one rolled-out clip.

    space_only frames each have their own class token, so they become clips of one frame (batch B*T).
    """
    scheme = scheme_of(maps)
    T, h, w = maps.grid
    steps = SCHEMES[scheme]
    layers = [[(s.grouping, getattr(maps, s.grouping)[i]) for s in steps] for i in range(len(maps))]
    if scheme != "space_only":
        return layers, (T, h, w)
    return [[(g, p.flatten(0, 1)[:, None]) for g, p in layer] for layer in layers], (1, h, w)


def _check_num_layers(maps: AttentionMaps, num_layers: int | None) -> int:
    depth = len(maps)
    if num_layers is None:
        return depth
    if not 1 <= num_layers <= depth:
        raise ValueError(f"num_layers={num_layers} is out of range: the maps have {depth} layers (1..{depth})")
    return num_layers


def layer_matrices(maps: AttentionMaps, head: Head = "mean") -> list[Tensor]:
    """One token-mixing matrix per layer, its steps composed (later step on the left): (B, 1+T*N, 1+T*N) each.

    For space_only the clips are the frames: (B*T, 1+N, 1+N).
    """
    layers, grid = _clip_layers(maps)
    out = []
    for layer in layers:
        M = None
        for grouping, probs in layer:
            S = step_matrix(probs, grouping, grid, head)
            M = S if M is None else S @ M
        out.append(M)
    return out


def rollout_matrix(maps: AttentionMaps, head: Head = "mean", num_layers: int | None = None) -> Tensor:
    """The full rollout R = M_layer[k-1] @ ... @ M_layer[0] over the first `num_layers` layers (all by default).

    Returns (B, 1+T*N, 1+T*N), row-stochastic; for space_only (B*T, 1+N, 1+N), one per frame.
    """
    mats = layer_matrices(maps, head)[: _check_num_layers(maps, num_layers)]
    R = mats[0]
    for M in mats[1:]:
        R = M @ R
    return R


def attention_rollout(
    maps: AttentionMaps, head: Head = "mean", num_layers: int | None = None, normalize: bool = True
) -> Tensor:
    """Relevance of every patch to the class token: the class row of the rollout, as (B, T, h, w).

    Args:
        maps: from `model(video, return_attention=True)`, any scheme.
        head: how heads are fused in every step: "mean" (the paper's figure), "max", or a head index.
        num_layers: roll out only the first layers (all by default).
        normalize: rescale each clip's map to sum to 1 (a map that is all zero stays zero).
    """
    k = _check_num_layers(maps, num_layers)
    layers, grid = _clip_layers(maps)
    T, h, w = maps.grid
    v = None  # the class row e0 @ R, built from the last step back
    for layer in reversed(layers[:k]):
        for grouping, probs in reversed(layer):
            M = step_matrix(probs, grouping, grid, head)  # (B', 1+G, 1+G)
            if v is None:
                v = M[:, 0]
            else:
                v = (v[:, None] @ M)[:, 0]
    relevance = v[:, 1:].reshape(-1, T, h, w)  # space_only: B*T one-frame clips give one frame each
    if grid[0] != T:
        relevance = relevance / T  # the final class token is the mean of the frames' class tokens
    if normalize:
        total = relevance.sum(dim=(1, 2, 3), keepdim=True)
        relevance = relevance / torch.where(total > 0, total, torch.ones_like(total))
    return relevance
