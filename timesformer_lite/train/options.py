"""Training-speed options: named choices made once, for a device, on a reference model.

The model in `model/` computes what the paper computes with plain PyTorch ops. Some of those ops have a
faster equivalent on some hardware; each option here swaps one submodule (or one switch of the timm-style
`Attention`) for an equivalent that gives the same numbers, and the trainer applies the defaults for its
device once, before training starts:

| option              | what it does                                                    | default on |
| ------------------- | --------------------------------------------------------------- | ---------- |
| `fused_attention`   | `scaled_dot_product_attention` in training (False: explicit)    | GPUs       |
| `short_row_softmax` | the softmax of rows under 16 written out with plain ops         | CPUs       |
| `recompute_gelu`    | the MLP keeps its hidden layer once and recomputes GELU         | GPUs       |
| `class_token_only`  | the last block computes only the class token's output           | both       |

Every option is tested equal to the reference (tests/test_train_options.py); the measured reasons are in
each docstring and benchmarks/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..model import Attention, Block, Mlp, TimeSformer
from ..model.blocks import GROUPINGS, lengths


@dataclass(frozen=True)
class TrainingOptions:
    """Which training-speed equivalents a model uses (see the module docstring).

    Args:
        fused_attention: fused SDPA in training. PyTorch's CPU flash kernel has a slow backward at small head
            dims: forward + backward of the toy preset's spatial attention (256 x 4 heads x 17 tokens, d=16)
            took 8.1 ms fused and 2.2 ms explicit on 2 cores, so CPUs train on the explicit path.
        short_row_softmax: `ShortRowSoftmax` on the explicit path. torch's CPU softmax kernel is slow on rows
            shorter than its vector width: the toy temporal attention (8 frames) took 3.4 ms with it and
            0.75 ms written out.
        recompute_gelu: `GeluLinear` as the MLP's `fc2`. Autograd otherwise keeps the hidden layer both before
            and after GELU, a block's two largest activations; TimeSformer-B under bf16 autocast keeps 562 MiB
            per clip instead of 663 for the backward pass. On a CPU the extra GELU costs more than it saves.
        class_token_only: `ClassTokenOnlyBlock` as the last block: the head reads the class token alone, so
            the last block's patch queries, output projection and MLP are skipped (about 30 % of the toy
            preset's two-block forward and backward, 5 % of TimeSformer-B's).
    """

    fused_attention: bool = True
    short_row_softmax: bool = False
    recompute_gelu: bool = False
    class_token_only: bool = False


def training_options(device: torch.device) -> TrainingOptions:
    """The trainer's defaults for `device`: CPUs take the explicit attention with short-row softmax, GPUs fused
    attention and the GELU recompute."""
    if device.type == "cpu":
        return TrainingOptions(fused_attention=False, short_row_softmax=True, class_token_only=True)
    return TrainingOptions(fused_attention=True, recompute_gelu=True, class_token_only=True)


def apply_training_options(model: nn.Module, options: TrainingOptions) -> nn.Module:
    """Set `options` on every attention, MLP and the last block of `model` (in place; the parameters and their
    names are kept)."""
    if isinstance(model, TimeSformer) and len(model.blocks):
        model.blocks[-1] = _module_as(ClassTokenOnlyBlock if options.class_token_only else Block, model.blocks[-1])
    for module in model.modules():
        if isinstance(module, Attention):
            module.fused_attn = options.fused_attention
            module.softmax = ShortRowSoftmax() if options.short_row_softmax else nn.Softmax(dim=-1)
        elif isinstance(module, Mlp):
            recompute = options.recompute_gelu and module.drop.p == 0  # dropout sits between GELU and fc2
            module.fc2 = _module_as(GeluLinear if recompute else nn.Linear, module.fc2)
            module.act = nn.Identity() if recompute else nn.GELU()
    return model


def _module_as(kind: type[nn.Module], module: nn.Module) -> nn.Module:
    """`module` as a `kind` (a subclass with another forward, or its base) that shares its submodules,
    parameters and settings: the same state-dict names, and an optimizer made before still holds them."""
    if type(module) is kind:
        return module
    new = kind.__new__(kind)
    new.__dict__ = module.__dict__
    return new


class ShortRowSoftmax(nn.Module):
    """`softmax(-1)` with plain ops for rows shorter than 16 entries (`nn.Softmax(-1)` for longer ones)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] >= 16:
            return x.softmax(dim=-1)
        e = (x - x.amax(dim=-1, keepdim=True)).exp()
        return e / e.sum(dim=-1, keepdim=True)


class GeluLinear(nn.Linear):
    """`F.linear(F.gelu(h))` that keeps only h for the backward pass and recomputes GELU(h) there.

    Replaces an MLP's `fc2` (with `act` made an identity); bitwise the outputs and gradients of the plain ops,
    autocast included, and it compiles into one graph (tested).
    """

    def forward(self, h: Tensor) -> Tensor:
        return _GeluLinearFn.apply(h, self.weight, self.bias)


class _GeluLinearFn(torch.autograd.Function):
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
            grad_act = (grad @ weight.to(grad.dtype)).to(h.dtype)
            grad_h = torch.ops.aten.gelu_backward(grad_act, h)
        if ctx.needs_input_grad[1]:
            grad_weight = (grad.reshape(-1, grad.shape[-1]).t() @ act.reshape(-1, act.shape[-1])).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0).to(weight.dtype)
        return grad_h, grad_weight, grad_bias


class ClassTokenOnlyBlock(Block):
    """A model's last block, computing only what the class token's output needs.

    The head reads the class token alone, so the last step's patch queries, its output projection for the
    patches and the patches' MLP are never used: this block skips them and returns the patch tokens as they
    came in. The class token's numbers are the full block's (tested to 1e-12 in float64, gradients
    included); with attention weights asked for, it is the full block.
    """

    def forward(
        self, x: Tensor, cls: Tensor, grid: tuple[int, int], need_weights: bool = False
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        if need_weights:
            return super().forward(x, cls, grid, need_weights)
        *added, last = self.steps
        for step in added:
            x, cls, _ = self.attend(step, x, cls, grid)
        B, T, N, D = x.shape
        pattern = GROUPINGS[last.grouping].pattern
        seq = rearrange(x, pattern, **lengths(pattern, B, T, *grid))  # (S, L, D)
        S = seq.shape[0]
        norm, attn = getattr(self, f"{last.prefix}norm1"), getattr(self, f"{last.prefix}attn")
        tokens = norm(torch.cat([cls.repeat_interleave(S // B, dim=0)[:, None], seq], dim=1))  # (S, 1+L, D)
        H, d = attn.num_heads, attn.head_dim
        w, b = attn.qkv.weight, attn.qkv.bias
        q = F.linear(tokens[:, :1], w[:D], None if b is None else b[:D]).view(S, 1, H, d).transpose(1, 2)
        kv = F.linear(tokens, w[D:], None if b is None else b[D:]).view(S, -1, 2, H, d).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)  # (S, heads, 1+L, d); q: (S, heads, 1, d), the class token's copies alone
        if attn.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if self.training else 0.0)
        else:
            out = attn.attn_drop(attn.softmax(q @ k.transpose(-2, -1) * attn.scale)) @ v
        out = attn.proj_drop(attn.proj(out.reshape(S, D)))
        cls = cls + self.drop_path(out).reshape(B, S // B, D).mean(dim=1)
        return x, cls + self.drop_path(self.mlp(self.norm2(cls))), {}
