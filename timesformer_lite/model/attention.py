"""Multi-head self-attention, the MLP and stochastic depth: the pieces every TimeSformer block is made of.

Built from scratch in notebooks/03_self_attention_from_scratch.ipynb. Keywords choose training-speed
equivalents at construction, as timm's `fused_attn` does (the same numbers; train/options.py says which).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ShortRowSoftmax, gelu_linear


class Attention(nn.Module):
    """Multi-head self-attention over a batch of sequences, with a fused and an explicit path.

    The parameter names (`qkv`, `proj`) are the official TimeSformer / timm ones, so checkpoints map 1:1.

    Args:
        dim: token width D.
        num_heads: heads; each has d = D / heads channels.
        qkv_bias: bias on the fused q, k, v projection (True in TimeSformer).
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout after the output projection.
        fused_attn: use `scaled_dot_product_attention` (fused kernels where the backend has them) unless
            weights are asked for; False always takes the explicit softmax path, which computes the same.
        short_row_softmax: the explicit path's softmax is `ShortRowSoftmax` (the same numbers).
    """

    # fmt: off
    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
        fused_attn: bool = True, short_row_softmax: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.softmax = ShortRowSoftmax() if short_row_softmax else nn.Softmax(dim=-1)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
    # fmt: on

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x: (S, L, D) sequences -> (S, L, D), and the probabilities (S, heads, L, L) if `need_weights`."""
        S, L, D = x.shape
        qkv = self.qkv(x).reshape(S, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (S, heads, L, d)
        probs = None
        if self.fused_attn and not need_weights:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            probs = self.softmax(q @ k.transpose(-2, -1) * self.scale)  # (S, heads, L, L)
            out = self.attn_drop(probs) @ v
        out = out.transpose(1, 2).reshape(S, L, D)
        return self.proj_drop(self.proj(out)), probs if need_weights else None

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, fused_attn={self.fused_attn}"


class ClassAttention(Attention):
    """An `Attention` computing each sequence's first token (the class token) alone, as CaiT's `ClassAttn`, with
    an `Attention`'s weights and names. One query needs no keys or values: per head, with k_j = W_k x_j + b_k
    and v_j = W_v x_j + b_v,

        q . k_j = (W_k^T q) . x_j + q . b_k          sum_j p_j v_j = W_v (sum_j p_j x_j) + b_v

    and q . b_k is the same for every j, so the softmax drops it: D-wide vectors per head instead of the
    L x D x 2D key and value products (3.7 of TimeSformer-B's 392 GFLOP in its last block). With
    `need_weights` it is the full `Attention`.
    """

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x: (S, L, D) sequences -> the first token's output (S, 1, D), None; `need_weights`: as `Attention`."""
        if need_weights:
            return super().forward(x, need_weights)
        S, L, D = x.shape
        H, d = self.num_heads, self.head_dim
        w_q, w_k, w_v = self.qkv.weight.view(3, H, d, D).unbind(0)
        b_q, _, b_v = (None,) * 3 if self.qkv.bias is None else self.qkv.bias.view(3, D)
        q = F.linear(x[:, 0], w_q.reshape(D, D), b_q).view(S, H, d) * self.scale
        pulled = torch.einsum("shd,hdc->shc", q, w_k)  # (S, heads, D): W_k^T q
        probs = self.attn_drop(self.softmax(pulled @ x.transpose(1, 2)))  # (S, heads, L)
        out = torch.einsum("shc,hdc->shd", probs @ x, w_v).reshape(S, 1, D)  # W_v (sum_j p_j x_j)
        return self.proj_drop(self.proj(out if b_v is None else out + b_v)), None

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, queries=first token, keys and values folded"


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear, the transformer's per-token feed-forward (`fc1`, `fc2`).

    Args:
        dim, hidden: token width and hidden width.
        drop: dropout after GELU and after fc2.
        recompute_gelu: keep the hidden layer once for the backward pass and recompute GELU there (autograd
            otherwise keeps it before and after GELU, a block's two largest activations); the same outputs
            and gradients. Dropout sits between GELU and fc2, so it needs `drop=0`.
    """

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, recompute_gelu: bool = False) -> None:
        super().__init__()
        if recompute_gelu and drop > 0:  # the dropout between GELU and fc2 would be skipped
            raise ValueError(f"recompute_gelu needs drop=0, got drop={drop}: set one of them")
        self.recompute_gelu = recompute_gelu
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        if self.recompute_gelu:
            return self.drop(gelu_linear(self.fc1(x), self.fc2.weight, self.fc2.bias))
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

    def extra_repr(self) -> str:
        return f"recompute_gelu={self.recompute_gelu}" if self.recompute_gelu else ""


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole residual branch per row of dim 0 and rescale the rest.

    Several tensors passed together share one mask (the patch tokens and the class token of one clip).
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if self.p == 0.0 or not self.training:
            return xs[0] if len(xs) == 1 else xs
        keep = 1.0 - self.p
        mask = torch.empty(xs[0].shape[0], device=xs[0].device, dtype=xs[0].dtype).bernoulli_(keep) / keep
        out = tuple(x * mask.view(-1, *([1] * (x.dim() - 1))) for x in xs)
        return out[0] if len(out) == 1 else out

    def extra_repr(self) -> str:
        return f"p={self.p}"
