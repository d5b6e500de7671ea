"""Layers and layer algebra for the model's speed variants: the same numbers as the plain ops, faster somewhere.

The reference model (`model/`) builds them when its options ask (`short_row_softmax`, `recompute_gelu`) and
`tl.fuse` folds with `fold_linears`; train/options.py says which options a device gets and why.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _row_softmax(x: Tensor) -> Tensor:
    """`softmax(-1)` written out in at least float32 (bf16 in, float32 arithmetic and out; float64 stays)."""
    wide = x.to(torch.promote_types(x.dtype, torch.float32))
    y = (wide - wide.amax(dim=-1, keepdim=True)).exp_()
    return y.div_(y.sum(dim=-1, keepdim=True))


class _RowSoftmax(torch.autograd.Function):
    """`_row_softmax` with its own backward, y * (g - sum(g * y)), in the same precision: for rows shorter than
    `ShortRowSoftmax.SHORT`, where torch's CPU kernel is slow."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = _row_softmax(x)
        ctx.save_for_backward(y)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        gy = grad.to(y.dtype) * y
        return gy.sub_(y * gy.sum(dim=-1, keepdim=True)).to(grad.dtype)


class ShortRowSoftmax(nn.Module):
    """`softmax(-1)`, the same numbers up to rounding: rows shorter than `SHORT` entries written out in float32
    (`_row_softmax`; with their own backward, `_RowSoftmax`, where autograd needs one), `Tensor.softmax` for
    longer ones. Torch's CPU kernel is slow on rows shorter than its vector width, and in bfloat16 on rows shorter
    than 32 (toy preset under bf16 autocast, forward and backward: 8-entry rows 1.7 ms with the kernel, 3.5 with
    plain ops, 0.7 written out in float32; 17-entry rows 3.4 ms against 1.6). Without autograd (inference, and
    the traces `export` makes) it is plain ops."""

    SHORT = 32

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] >= self.SHORT:
            return x.softmax(dim=-1)
        if x.requires_grad and torch.is_grad_enabled():
            return _RowSoftmax.apply(x)
        return _row_softmax(x).to(x.dtype)


class _GeluLinear(torch.autograd.Function):
    """`F.linear(F.gelu(h), weight, bias)` that keeps only h for the backward pass and recomputes GELU there."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(h), weight, bias)  # under autocast: its cast of weight and bias

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        h, weight = ctx.saved_tensors
        act = F.gelu(h).to(grad.dtype)  # the dtype the forward's product ran in (autocast's, or the input's)
        grad_h = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_h = torch.ops.aten.gelu_backward((grad @ weight.to(grad.dtype)).to(h.dtype), h)
        if ctx.needs_input_grad[1]:
            grad_weight = (grad.reshape(-1, grad.shape[-1]).t() @ act.reshape(-1, act.shape[-1])).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0).to(weight.dtype)
        return grad_h, grad_weight, grad_bias


def gelu_linear(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`F.linear(F.gelu(h), weight, bias)`, keeping only h for the backward pass (GELU is recomputed there):
    bitwise the plain ops' outputs and gradients, autocast included."""
    return _GeluLinear.apply(h, weight, bias)


def fold_linears(outer: nn.Linear, inner: nn.Linear) -> nn.Linear:
    """`outer(inner(x))` as one `nn.Linear`: W = W_outer @ W_inner, b = W_outer @ b_inner + b_outer.

    Computed in float64 on the CPU (every device has it there), then stored in `inner`'s dtype and device, so
    the fold rounds once, like the single product it replaces.
    """

    def f64(t: Tensor) -> Tensor:
        return t.detach().to("cpu", torch.float64)

    weight = f64(outer.weight) @ f64(inner.weight)
    bias = torch.zeros(weight.shape[0], dtype=torch.float64)
    if inner.bias is not None:
        bias += f64(outer.weight) @ f64(inner.bias)
    if outer.bias is not None:
        bias += f64(outer.bias)
    like = inner.weight
    layer = nn.Linear(weight.shape[1], weight.shape[0], device="meta")
    layer.weight = nn.Parameter(weight.to(like.device, like.dtype), requires_grad=like.requires_grad)
    layer.bias = nn.Parameter(bias.to(like.device, like.dtype), requires_grad=like.requires_grad)
    return layer
