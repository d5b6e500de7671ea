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

import re
from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from .attention import Attention, DropPath, Mlp, folded, linear, tracing


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


def _lengths(pattern: str, sizes: dict[str, int]) -> dict[str, int]:
    """The axis lengths that appear in an einops pattern (einops rejects names it does not use)."""
    names = set(re.findall(r"[a-z]+", pattern))
    return {k: v for k, v in sizes.items() if k in names}


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
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        attention_type: str = "divided_space_time",
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.steps = SCHEMES[attention_type]
        for step in self.steps:
            self.add_module(f"{step.prefix}norm1", nn.LayerNorm(dim, eps=eps))
            self.add_module(f"{step.prefix}attn", Attention(dim, num_heads, qkv_bias, attn_drop, drop))
            if not step.with_cls:
                self.add_module(f"{step.prefix}fc", nn.Linear(dim, dim))
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self._folds: dict = {}  # inference: each added step's `*_fc` folded into its `proj` (see `attend`)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def zero_added_steps(self) -> None:
        """Zero the `*_fc` layers, so the added steps are no-ops and the block is its image ViT block."""
        for step in self.steps:
            if not step.with_cls:
                fc = getattr(self, f"{step.prefix}fc")
                nn.init.zeros_(fc.weight)
                nn.init.zeros_(fc.bias)

    def _fold_fc(self, attn: Attention, x: Tensor, tokens: int) -> bool:
        """Whether an added step folds its `*_fc` into `attn.proj` (see `attend`): more tokens than channels,
        no dropout between the two in training, and real data (`utils.model_flops` counts the reference
        arithmetic on the meta device)."""
        return tokens > x.shape[-1] and (attn.proj_drop.p == 0 or not self.training) and x.device.type != "meta"

    def _keep_folds(self, x: Tensor) -> bool:
        """Whether a fold of `*_fc` into `proj` may be kept for the next call (see `folded`): inference in
        eager mode (nothing records gradients, nothing is traced or compiled)."""
        return not (self.training or torch.is_grad_enabled() or tracing())

    def attend(
        self,
        step: Step,
        x: Tensor,
        cls: Tensor,
        grid: tuple[int, int],
        need_weights: bool,
        cls_only: bool = False,
        inplace: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One residual attention step. x: (B, T, N, D), cls: (B, D) -> updated x, cls, and probabilities.

        `cls_only` (a step with the class token): update only the class token and return x as it came in.
        `inplace`: add the step's output into x itself (x must be a tensor the block made, autograd off).
        """
        B, T, N, D = x.shape
        h, w = grid
        pattern = GROUPINGS[step.grouping].pattern
        sizes = axis_sizes(B, T, h, w)
        seq = rearrange(x, pattern, **_lengths(pattern, sizes))  # (S, L, D), S = B * groups, b outermost
        S = seq.shape[0]
        if step.with_cls:
            seq = torch.cat([cls[:, None, None].expand(B, S // B, 1, D).reshape(S, 1, D), seq], dim=1)
        attn = getattr(self, f"{step.prefix}attn")
        seq = getattr(self, f"{step.prefix}norm1")(seq)
        if step.with_cls and cls_only:  # its query alone; the patches only give keys and values
            out = self.drop_path(attn.proj_drop(linear(attn.proj, attn.first_query(seq))))  # (S, D)
            return x, cls + out.reshape(B, S // B, D).mean(dim=1), None
        if step.with_cls:
            out, probs = attn(seq, need_weights)
            out = self.drop_path(out)
            cls = cls + out[:, 0].reshape(B, S // B, D).mean(dim=1)  # the copies, averaged back
            out = out[:, 1:]
        elif self._fold_fc(attn, x, S * seq.shape[1]):
            # `*_fc` right after the output projection `proj` is one Linear, W = W_fc @ W_proj: a D x D
            # matmul per token less (4.7 % of TimeSformer-B's forward FLOPs, as much again in the backward
            # pass, and one activation less to keep) for a D x D x D product, kept between inference calls.
            # Drop path scales each clip's rows, so it applies before b_fc as it does before `*_fc`.
            out, probs = attn.heads(seq, need_weights)
            fc = getattr(self, f"{step.prefix}fc")
            if self.drop_path.p == 0 or not self.training:
                out = linear(folded(fc, attn.proj, self._folds if self._keep_folds(x) else None, step.prefix), out)
            else:
                out = self.drop_path(linear(folded(fc, attn.proj, outer_bias=False), out)) + fc.bias
        else:
            out, probs = attn(seq, need_weights)
            out = linear(getattr(self, f"{step.prefix}fc"), self.drop_path(out))
        out_pattern = " -> ".join(reversed(pattern.split(" -> ")))
        out = rearrange(out, out_pattern, **_lengths(out_pattern, sizes))
        x = x.add_(out) if inplace else x + out
        if probs is not None:
            probs = probs.reshape(*group_shape(step.grouping, B, T, h, w), *probs.shape[1:])
        return x, cls, probs

    def forward(
        self, x: Tensor, cls: Tensor, grid: tuple[int, int], need_weights: bool = False, cls_only: bool = False
    ) -> tuple[Tensor | None, Tensor, dict[str, Tensor]]:
        """x: (B, T, N, D), cls: (B, D), grid: (h, w) -> x, cls, {grouping: probabilities} (empty unless asked).

        `cls_only`: compute only what the class token's output needs and return None for x. The model does
        this in its last block, whose patch outputs nothing reads (the head sees the class token alone): the
        last step's patch queries and output projection and the patch tokens' MLP are skipped, about 5 % of
        TimeSformer-B's forward FLOPs. The class token's numbers are those of the full block.
        """
        maps = {}
        inference = not (torch.is_grad_enabled() or self.training)  # then the block's own tensors update in place
        for i, step in enumerate(self.steps):
            last = cls_only and not need_weights and i == len(self.steps) - 1
            x, cls, probs = self.attend(step, x, cls, grid, need_weights, cls_only=last, inplace=inference and i > 0)
            if probs is not None:
                maps[step.grouping] = probs
        if cls_only and not need_weights:
            return None, cls + self.drop_path(self.mlp(self.norm2(cls))), maps
        dx, dcls = self.drop_path(self.mlp(self.norm2(x)), self.mlp(self.norm2(cls)))
        return (x.add_(dx) if inference else x + dx), cls + dcls, maps


def attended_patches(attention_type: str, T: int, h: int, w: int, query: tuple[int, int, int]) -> dict[str, Tensor]:
    """Which patches a query patch (t, i, j) attends to in each step of a scheme, read off the real groupings.

    Returns {grouping: bool (T, h, w)}; drawn in notebooks/04 and the README figure.
    """
    t, i, j = query
    sizes = axis_sizes(1, T, h, w)
    index = torch.arange(T * h * w).reshape(1, T, h * w, 1)  # token id = t*N + i*w + j
    target = t * h * w + i * w + j
    out = {}
    for step in SCHEMES[attention_type]:
        pattern = GROUPINGS[step.grouping].pattern
        seqs = rearrange(index, pattern, **_lengths(pattern, sizes))[..., 0]  # (S, L)
        members = seqs[(seqs == target).any(dim=1)].flatten()
        mask = torch.zeros(T * h * w, dtype=torch.bool)
        mask[members] = True
        out[step.grouping] = mask.reshape(T, h, w)
    return out
