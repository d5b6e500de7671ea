"""Multi-head self-attention, the MLP and stochastic depth: the pieces every TimeSformer block is made of.

Built from scratch in notebooks/03_self_attention_from_scratch.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        fused_attn: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.softmax = nn.Softmax(dim=-1)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

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


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear, the transformer's per-token feed-forward (`fc1`, `fc2`)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


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
