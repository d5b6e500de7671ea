"""The TimeSformer block for all five attention schemes of the paper.

Patch tokens live as `x[B, T, N, D]` (N = h*w, row-major over the patch grid) and the class token apart
as `cls[B, D]`. Every scheme is a list of attention *steps*; a step views `x` as a batch of sequences
with one einops rearrangement, attends within each sequence, and views the result back:

| scheme                | steps (in order)                                    |
| --------------------- | --------------------------------------------------- |
| `divided_space_time`  | time (a patch across frames), space (a frame)       |
| `joint_space_time`    | joint (all T*N patches of the clip)                 |
| `space_only`          | space (frames processed independently)              |
| `sparse_local_global` | local (T x h/2 x w/2 windows), sparse (stride 2)    |
| `axial`               | time, width (a row of a frame), height (a column)   |

The last step of every scheme is the image ViT's own attention (`norm1`, `attn`). It sees the class
token: the block's input `cls` is copied into every sequence and the copies' outputs are averaged back.
The earlier steps are the ones TimeSformer adds (`temporal_*`, `width_*`, `local_*`): they skip the class
token and end in a linear layer (`*_fc`) initialised to zero, so that a block inflated from an image ViT
starts out as that ViT block. This is exactly the official divided block (temporal_fc, averaged class
token); the paper gives no code for the sparse and axial schemes, which follow the same rule.

Built step by step in notebooks/04_space_time_attention_schemes.ipynb and 05_the_divided_block_and_the_model.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from ..layers import fold_linears
from .attention import Attention, ClassAttention, DropPath, Mlp


class Grouping(NamedTuple):
    """How one step turns `x[B, T, N, D]` into sequences: an einops pattern and the axes that index them."""

    pattern: str
    groups: tuple[str, ...]


GROUPINGS: dict[str, Grouping] = {
    "time": Grouping("b t n d -> (b n) t d", ("b", "n")),
    "space": Grouping("b t n d -> (b t) n d", ("b", "t")),
    "joint": Grouping("b t n d -> b (t n) d", ("b",)),
    "width": Grouping("b t (h w) d -> (b t h) w d", ("b", "t", "h")),
    "height": Grouping("b t (h w) d -> (b t w) h d", ("b", "t", "w")),
    # local: the grid split into 2x2 windows (hp, wp); each window with all its frames is one sequence
    "local": Grouping("b t (hp hs wp ws) d -> (b hp wp) (t hs ws) d", ("b", "hp", "wp")),
    # sparse global: every second patch along t, h and w, i.e. one sequence per offset (st, sh, sw)
    "sparse": Grouping("b (tq st) (hq sh wq sw) d -> (b st sh sw) (tq hq wq) d", ("b", "st", "sh", "sw")),
}


class Step(NamedTuple):
    """One attention step of a block: parameter prefix, grouping, and whether it carries the class token."""

    prefix: str
    grouping: str
    with_cls: bool


SCHEMES: dict[str, tuple[Step, ...]] = {
    "divided_space_time": (Step("temporal_", "time", False), Step("", "space", True)),
    "joint_space_time": (Step("", "joint", True),),
    "space_only": (Step("", "space", True),),
    "sparse_local_global": (Step("local_", "local", False), Step("", "sparse", True)),
    "axial": (Step("temporal_", "time", False), Step("width_", "width", False), Step("", "height", True)),
}


def _halves(n: int) -> int:
    """Parts (2, or 1 when n is odd) a dimension of length n is split into by local and sparse attention."""
    return 2 if n % 2 == 0 else 1


def axis_sizes(B: int, T: int, h: int, w: int) -> dict[str, int]:
    """Every axis length the groupings use, for B clips of T frames on an h x w patch grid."""
    hp, wp, st = _halves(h), _halves(w), _halves(T)
    return {
        "b": B, "t": T, "n": h * w, "h": h, "w": w,
        "hp": hp, "wp": wp, "hs": h // hp, "ws": w // wp,
        "st": st, "sh": hp, "sw": wp, "tq": T // st, "hq": h // hp, "wq": w // wp,
    }  # fmt: skip


def lengths(pattern: str, B: int, T: int, h: int, w: int) -> dict[str, int]:
    """The axis lengths an einops pattern names, for B clips of T frames on an h x w patch grid (einops
    rejects lengths for names a pattern does not use)."""
    names = set(re.findall(r"[a-z]+", pattern))
    return {k: v for k, v in axis_sizes(B, T, h, w).items() if k in names}


def group_shape(grouping: str, B: int, T: int, h: int, w: int) -> tuple[int, ...]:
    """Lengths of the axes that index a grouping's sequences, e.g. time -> (B, N)."""
    sizes = axis_sizes(B, T, h, w)
    return tuple(sizes[a] for a in GROUPINGS[grouping].groups)


class Block(nn.Module):
    """A pre-norm TimeSformer block: the scheme's attention steps, then the MLP.

    Args:
        dim, num_heads, mlp_ratio, qkv_bias: the usual transformer widths.
        attention_type: one of `SCHEMES`.
        drop, attn_drop, drop_path: dropout rates (drop_path is stochastic depth for this block).
        eps: LayerNorm epsilon (1e-6 in TimeSformer).
        fused_attn, short_row_softmax, recompute_gelu: `Attention`'s and `Mlp`'s training-speed switches.
        class_token_only: the last block, whose patch outputs the head never reads: its last step is a
            `ClassAttention`, its MLP sees the class token alone, the patch tokens come back as the earlier steps
            left them. The class token's numbers are the full block's (all of it when weights are asked for).
    """

    # fmt: off
    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
        attention_type: str = "divided_space_time", drop: float = 0.0, attn_drop: float = 0.0,
        drop_path: float = 0.0, eps: float = 1e-6, fused_attn: bool = True, short_row_softmax: bool = False,
        recompute_gelu: bool = False, class_token_only: bool = False,
    ) -> None:
        super().__init__()
        self.steps = SCHEMES[attention_type]
        self.class_token_only = class_token_only
        for step in self.steps:
            kind = ClassAttention if class_token_only and step.with_cls else Attention
            self.add_module(f"{step.prefix}norm1", nn.LayerNorm(dim, eps=eps))
            attn = kind(dim, num_heads, qkv_bias, attn_drop, drop, fused_attn, short_row_softmax)
            self.add_module(f"{step.prefix}attn", attn)
            if not step.with_cls:
                self.add_module(f"{step.prefix}fc", nn.Linear(dim, dim))
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop, recompute_gelu)
    # fmt: on

    def zero_added_steps(self) -> None:
        """Zero the `*_fc` layers, so the added steps are no-ops and the block is its image ViT block."""
        for step in self.steps:
            if not step.with_cls:
                fc = getattr(self, f"{step.prefix}fc")
                nn.init.zeros_(fc.weight)
                nn.init.zeros_(fc.bias)

    def fuse(self) -> None:
        """The inference form (`tl.fuse`): each added step's `*_fc` follows its attention's `proj` with nothing
        in between outside training (drop path is off), so it is folded into `proj` and becomes `nn.Identity`."""
        for step in self.steps:
            if not step.with_cls:
                attn = getattr(self, f"{step.prefix}attn")
                attn.proj = fold_linears(getattr(self, f"{step.prefix}fc"), attn.proj)
                setattr(self, f"{step.prefix}fc", nn.Identity())

    def attend(
        self, step: Step, x: Tensor, cls: Tensor, grid: tuple[int, int], need_weights: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One residual attention step. x: (B, T, N, D), cls: (B, D) -> updated x, cls, and probabilities."""
        B, T, N, D = x.shape
        pattern = GROUPINGS[step.grouping].pattern
        sizes = lengths(pattern, B, T, *grid)
        seq = rearrange(x, pattern, **sizes)  # (S, L, D): S = B * G sequences, b outermost
        G = math.prod(group_shape(step.grouping, B, T, *grid)[1:])  # sequences per clip (not S // B: B may be 0)
        norm, attn = getattr(self, f"{step.prefix}norm1"), getattr(self, f"{step.prefix}attn")
        if step.with_cls:  # a copy of the class token in front of every sequence
            copies = cls.repeat_interleave(G, dim=0)[:, None]  # (S, 1, D)
            out, probs = attn(norm(torch.cat([copies, seq], dim=1)), need_weights)  # (S, 1+L, D)
            out = self.drop_path(out)
            cls = cls + out[:, 0].reshape(B, G, D).mean(dim=1)  # the copies, averaged back
            if out.shape[1] == 1:  # a ClassAttention's output: the class token alone
                return x, cls, probs
            out = out[:, 1:]
        else:  # a step TimeSformer adds: patches only, then its zero-initialised `*_fc`
            out, probs = attn(norm(seq), need_weights)
            out = getattr(self, f"{step.prefix}fc")(self.drop_path(out))
        x = x + rearrange(out, " -> ".join(reversed(pattern.split(" -> "))), **sizes)
        if probs is not None:
            probs = probs.reshape(*group_shape(step.grouping, B, T, *grid), *probs.shape[1:])
        return x, cls, probs

    def forward(
        self, x: Tensor, cls: Tensor, grid: tuple[int, int], need_weights: bool = False
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """x: (B, T, N, D), cls: (B, D), grid: (h, w) -> x, cls, {grouping: probabilities} (empty unless asked)."""
        maps = {}
        for step in self.steps:
            x, cls, probs = self.attend(step, x, cls, grid, need_weights)
            if probs is not None:
                maps[step.grouping] = probs
        if self.class_token_only and not need_weights:  # nothing reads the patch tokens' MLP
            return x, cls + self.drop_path(self.mlp(self.norm2(cls))), maps
        dx, dcls = self.drop_path(self.mlp(self.norm2(x)), self.mlp(self.norm2(cls)))  # one mask per clip
        return x + dx, cls + dcls, maps


def attended_patches(attention_type: str, T: int, h: int, w: int, query: tuple[int, int, int]) -> dict[str, Tensor]:
    """Which patches a query patch (t, i, j) attends to in each step of a scheme, read off the real groupings.

    Returns {grouping: bool (T, h, w)}; drawn in notebooks/04 and the README figure.
    """
    t, i, j = query
    index = torch.arange(T * h * w).reshape(1, T, h * w, 1)  # token id = t*N + i*w + j
    target = t * h * w + i * w + j
    out = {}
    for step in SCHEMES[attention_type]:
        pattern = GROUPINGS[step.grouping].pattern
        seqs = rearrange(index, pattern, **lengths(pattern, 1, T, h, w))[..., 0]  # (S, L)
        members = seqs[(seqs == target).any(dim=1)].flatten()
        mask = torch.zeros(T * h * w, dtype=torch.bool)
        mask[members] = True
        out[step.grouping] = mask.reshape(T, h, w)
    return out
