"""Multi-head self-attention, the MLP and stochastic depth: the pieces every TimeSformer block is made of.

Built from scratch in notebooks/03_self_attention_from_scratch.ipynb.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def tracing() -> bool:
    """Whether torch.compile, TorchScript or `torch.jit.trace` is tracing this call. The eager-only speed
    paths (CPU kernels, kept folds, reused buffers) are skipped then; checked first, it costs no graph break."""
    return torch.compiler.is_compiling() or torch.jit.is_scripting() or torch.jit.is_tracing()


def _explicit_is_faster(q: Tensor) -> bool:
    """Whether the explicit softmax path beats fused SDPA here: CPU training (autograd recording).

    PyTorch's CPU flash kernel has a slow backward at small head dims: on 2 cores, forward + backward of the
    toy preset's spatial attention (256 x 4 heads x 17 tokens x d=16) took 8.1 ms fused vs 2.2 ms explicit, its
    temporal one (512 x 4 x 8 x 16) 3.4 vs 4.0 ms, and TimeSformer-B's shapes are within 10 % either way.
    Inference keeps the fused kernel (1.5-2x faster forward at d=64) and GPUs always use it.
    """
    return q.device.type == "cpu" and q.requires_grad


class _ShortSoftmax(torch.autograd.Function):
    """`softmax(-1)` written out, for rows shorter than one AVX-512 vector (16 floats): same numbers, faster.

    Why: torch's CPU softmax kernel is slow when the row is shorter than its vector width. On the toy
    preset's temporal attention (512 x 4 heads x 8 x 8) forward + backward took 3.4 ms with `softmax` and
    0.7 ms like this (0.75 written with plain ops, whose autograd saves more); at 17 tokens torch's is faster.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        e = (x - x.amax(-1, keepdim=True)).exp_()
        y = e.div_(e.sum(-1, keepdim=True))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        gy = grad * y  # d softmax: y * (g - sum(g * y))
        return gy.sub_(y * gy.sum(-1, keepdim=True))


def softmax(x: Tensor) -> Tensor:
    """`x.softmax(-1)`; on CPU rows shorter than 16 go through `_ShortSoftmax` (eager only, nothing to trace)."""
    if x.shape[-1] < 16 and x.device.type == "cpu" and not tracing():
        return _ShortSoftmax.apply(x)
    return x.softmax(dim=-1)


class Affine(NamedTuple):
    """A weight and bias that `linear` applies like an `nn.Linear`: two layers folded into one, or some
    output rows of one layer."""

    weight: Tensor  # (out, in)
    bias: Tensor | None  # (out,)


def rows(layer: nn.Linear, start: int, stop: int) -> Affine:
    """Output features start:stop of `layer` as an `Affine` (views: gradients reach the layer's parameters)."""
    bias = None if layer.bias is None else layer.bias[start:stop]
    return Affine(layer.weight[start:stop], bias)


def folded(
    outer: nn.Linear,
    inner: nn.Linear,
    cache: dict[tuple[str, bool], tuple[tuple[Tensor, ...], Affine]] | None = None,
    key: str = "",
    outer_bias: bool = True,
) -> Affine:
    """`outer` after `inner` as one `Affine`: W_outer @ W_inner and W_outer @ b_inner (+ b_outer), a
    D x D x D product, cheaper than the tokens x D x D product it saves whenever there are more tokens
    than D. Made with autograd, gradients reach both layers (training folds on every step).

    `cache` (inference only: the caller promises nothing records gradients): on the CPU in fp32, keep the
    fold in `cache[key, outer_bias]` with a copy of the four tensors it was made from, and reuse it only
    while every one of them is exactly equal to its copy (`torch.equal`, a read of the weights: ~0.4 ms
    against ~5 ms to refold TimeSformer-B's 768 x 768 layers). So no write, not even through `.data` or
    numpy, can leave it stale, and there is nothing to invalidate by hand. On a GPU or under autocast the
    fold is made anew instead: there it takes microseconds, and comparing would make the host wait for the
    device.
    """

    def fold() -> Affine:
        bias = torch.addmv(outer.bias, outer.weight, inner.bias) if outer_bias else outer.weight @ inner.bias
        return Affine(outer.weight @ inner.weight, bias)

    if cache is None or outer.weight.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return fold()
    sources = (outer.weight, outer.bias, inner.weight, inner.bias)
    entry = cache.get((key, outer_bias))
    if entry is None or not all(_same(a, b) for a, b in zip(entry[0], sources, strict=True)):
        entry = cache[key, outer_bias] = (tuple(t.detach().clone() for t in sources), fold())
    return entry[1]


def _same(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors hold exactly the same values (shape, dtype, device and every element)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


def _has_onednn_linear() -> bool:
    """`mkldnn._linear_pointwise` is a private op: use it only where this torch build registers it."""
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._linear_pointwise is not None
    except (AttributeError, RuntimeError):
        return False


def cpu_info(key: str) -> str:
    """One field of /proc/cpuinfo for the first CPU ("vendor_id": "GenuineIntel", "model name": ...), ""
    where there is no such file or field."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


# The GEMM library for fp32 CPU inference: torch's own matmul (MKL in the official wheels) on Intel CPUs,
# oneDNN elsewhere. One thread, TimeSformer-B's Linear shapes (1568 x 768 -> 2304, 768, 3072; 3072 -> 768):
# on an Intel Xeon (AVX-512) MKL ran them at 172-183 GFLOP/s and oneDNN at 154-163 (1.90 vs 2.09 s per
# forward); on an AMD EPYC (Zen 4) MKL ran them at 72-98 GFLOP/s on 2 threads and oneDNN at 88-107.
_ONEDNN_GEMM = cpu_info("vendor_id") != "GenuineIntel" and _has_onednn_linear()


def _cpu_inference(x: Tensor, layer: nn.Linear | Affine) -> bool:
    """Whether `linear` may take its inference path: fp32 on the CPU, no autograd recording, no autocast,
    and eager mode (nothing to trace: the check comes first, so it compiles without a graph break)."""
    return (
        not tracing()
        and x.device.type == "cpu"
        and x.dtype == layer.weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad))
        and not torch.is_autocast_enabled("cpu")
    )


class _Scratch(threading.local):
    """Each thread's scratch buffer for `linear(..., into_scratch=True)` (fp32 CPU inference)."""

    buffer: Tensor | None = None


_SCRATCH = _Scratch()
SCRATCH_BYTES = 64 * 2**20  # larger outputs are allocated as usual: no thread keeps more than this


def scratch(rows: int, cols: int) -> Tensor | None:
    """This thread's reusable (rows, cols) fp32 CPU buffer, or None above `SCRATCH_BYTES`.

    Whatever was written into it before is overwritten by the next caller in the same thread: a caller uses
    it only for an intermediate it reads to the end before returning, and returns nothing that views it.
    """
    n = rows * cols
    if n * 4 > SCRATCH_BYTES:
        return None
    if _SCRATCH.buffer is None or _SCRATCH.buffer.numel() < n:
        with torch.inference_mode(False):  # a normal tensor: writable in and out of inference mode
            _SCRATCH.buffer = torch.empty(n)
    return _SCRATCH.buffer[:n].view(rows, cols)


def linear(layer: nn.Linear | Affine, x: Tensor, gelu: bool = False, into_scratch: bool = False) -> Tensor:
    """`layer(x)`, followed by exact GELU if `gelu`; the same numbers, faster for fp32 CPU inference.

    Why: on CPUs other than Intel's, torch's fp32 matmuls (MKL) are slower than oneDNN's, the library
    torch itself uses for convolutions: on the AMD (Zen 4) dev machine 72-98 GFLOP/s against 88-107 for
    the model's shapes (1568 x 768 -> 768 went from 45 to 76); there inference runs through
    `mkldnn._linear_pointwise`, the op `torch.compile` emits for this on CPU, which also applies GELU
    while the tile is in cache. On Intel CPUs MKL is the faster (`_ONEDNN_GEMM`) and GELU runs in place
    on its output, so no second 1568 x 3072 buffer is allocated. Neither has autograd: inference only
    (tested equal in tests/test_model_fastpath.py). Forward hooks on the Linear do not fire here.

    `into_scratch` (the MKL path): write the output into this thread's `scratch` buffer, for an output the
    caller has consumed before anything else could write there (`Attention.heads`' q, k, v and the MLP's
    hidden layer, TimeSformer-B's two largest: 14 and 19 MB a clip). Why: a fresh buffer that size is
    memory the allocator has just taken from the OS or evicted from cache, and the first write into it
    costs page faults and cache misses; one reused buffer does not. On one core of an Intel Xeon, paired
    runs of a batch-1 forward: 76 ms (3 %) less, and minor page faults per forward from 13-48 k to 0-11 k.
    """
    if not _cpu_inference(x, layer):
        out = F.linear(x, layer.weight, layer.bias)
        return F.gelu(out) if gelu else out
    if _ONEDNN_GEMM and torch.backends.mkldnn.enabled:
        act, algorithm = ("gelu", "none") if gelu else ("none", "")  # "none": erf GELU, as nn.GELU()
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, act, [], algorithm)
    buffer = scratch(x.numel() // x.shape[-1], layer.weight.shape[0]) if into_scratch else None
    if buffer is None:
        out = F.linear(x, layer.weight, layer.bias)
    else:
        flat = x.reshape(-1, x.shape[-1])
        if layer.bias is None:
            torch.mm(flat, layer.weight.t(), out=buffer)
        else:
            torch.addmm(layer.bias, flat, layer.weight.t(), out=buffer)
        out = buffer.view(*x.shape[:-1], -1)
    return torch.ops.aten.gelu_(out) if gelu else out


def _autocast_off(x: Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off on x's device, where that device has autocast."""
    if torch.amp.is_autocast_available(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


class Attention(nn.Module):
    """Multi-head self-attention over a batch of sequences, with a fused and an explicit path.

    The parameter names (`qkv`, `proj`) are the official TimeSformer / timm ones, so checkpoints map 1:1.

    Args:
        dim: token width D.
        num_heads: heads; each has d = D / heads channels.
        qkv_bias: bias on the fused q, k, v projection (True in TimeSformer).
        attn_drop: dropout on the attention probabilities.
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x: (S, L, D) sequences -> (S, L, D), and the probabilities (S, heads, L, L) if `need_weights`."""
        out, probs = self.heads(x, need_weights)
        return self.proj_drop(linear(self.proj, out)), probs

    def heads(self, x: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """The attention before the output projection `proj`: the heads' outputs side by side, (S, L, D).

        Without weights, `scaled_dot_product_attention` runs (fused kernels where the backend has them);
        with weights, the explicit softmax path computes the same thing and returns what it attended to.
        """
        S, L, D = x.shape
        qkv = linear(self.qkv, x, into_scratch=True)  # read to the end by `mix`, which returns new tensors
        qkv = qkv.reshape(S, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out, probs = self.mix(*qkv.unbind(0), need_weights)  # q, k, v: each (S, heads, L, d)
        return out.transpose(1, 2).reshape(S, L, D), probs

    def first_query(self, x: Tensor) -> Tensor:
        """`heads(x)[0][:, 0]`, the heads' output for the first token alone, (S, D): its query against every key.

        What the class token needs in the last block, where nothing reads the patch tokens' outputs. One
        query needs no keys or values either: with k_j = W_k x_j + b_k and v_j = W_v x_j + b_v (one head),

            q . k_j = (W_k^T q) . x_j + q . b_k         sum_j p_j v_j = W_v (sum_j p_j x_j) + b_v sum_j p_j

        so the query is pulled back through W_k to the tokens and the attention-weighted token average is
        pushed forward through W_v: D-wide vectors per head instead of the L x D x 2D key and value products
        (3.7 of TimeSformer-B's 392 GFLOP). The same numbers up to rounding, gradients included.
        """
        S, L, D = x.shape
        H, d = self.num_heads, self.head_dim
        w_k, w_v = self.qkv.weight[D:].view(2, H, d, D).unbind(0)
        b_k, b_v = (None, None) if self.qkv.bias is None else self.qkv.bias[D:].view(2, H, d).unbind(0)
        q = linear(rows(self.qkv, 0, D), x[:, 0]).view(S, H, d) * self.scale
        # D-wide products, cheap in the tokens' own precision: fp32 under autocast (LayerNorm's output), where
        # bf16 would round W_k^T q and the average, not only k and v, and move bf16 logits 3e-3 further from HF's
        with _autocast_off(x):
            q, w_k, w_v = q.to(x.dtype), w_k.to(x.dtype), w_v.to(x.dtype)
            logits = torch.einsum("shd,hdc->shc", q, w_k) @ x.transpose(1, 2)  # (S, H, L): q . (W_k x_j)
            if b_k is not None:
                logits = logits + (q * b_k.to(x.dtype)).sum(-1, keepdim=True)
            probs = F.dropout(softmax(logits), self.attn_drop if self.training else 0.0, self.training)
            out = torch.einsum("shc,hdc->shd", probs @ x, w_v)  # W_v (sum_j p_j x_j), (S, H, d)
            if b_v is not None:
                out = out + probs.sum(-1, keepdim=True) * b_v.to(x.dtype)
        return out.reshape(S, D)

    def mix(self, q: Tensor, k: Tensor, v: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """softmax(q k^T / sqrt(d)) v for q (S, heads, Lq, d) and k, v (S, heads, L, d) -> (S, heads, Lq, d),
        and the probabilities (S, heads, Lq, L) if `need_weights`."""
        drop = self.attn_drop if self.training else 0.0
        if need_weights or _explicit_is_faster(q):
            probs = softmax(q @ k.transpose(-2, -1) * self.scale)
            out = F.dropout(probs, drop, self.training) @ v
            return out, probs if need_weights else None
        return F.scaled_dot_product_attention(q, k, v, dropout_p=drop), None


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear, the transformer's per-token feed-forward (`fc1`, `fc2`)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        recording = torch.is_grad_enabled() and (x.requires_grad or self.fc1.weight.requires_grad)
        if recording and _recompute_gelu(x) and (self.drop.p == 0 or not self.training):
            h = linear(self.fc1, x)
            return self.drop(_GeluLinear.apply(h, self.fc2.weight, self.fc2.bias))
        h = linear(self.fc1, x, gelu=True, into_scratch=True)  # exact GELU, as self.act
        return self.drop(linear(self.fc2, self.drop(h)))


@contextlib.contextmanager
def gpu_training_paths() -> Iterator[None]:
    """Training takes the GPU's code paths on any device while this is open (fused attention, GELU
    recomputed), so that a CPU can count what they keep for the backward pass (`timesformer-lite bench
    saved`). Not thread-safe: it swaps this module's path choices for its duration."""
    global _explicit_is_faster, _recompute_gelu
    saved = _explicit_is_faster, _recompute_gelu
    _explicit_is_faster, _recompute_gelu = (lambda q: False), (lambda x: True)
    try:
        yield
    finally:
        _explicit_is_faster, _recompute_gelu = saved


def _recompute_gelu(x: Tensor) -> bool:
    """Whether training keeps the MLP's hidden layer once and recomputes GELU (`_GeluLinear`): on GPUs,
    where memory sets the batch size. On a CPU the extra GELU costs more than the memory it frees: the
    toy preset's training step took 81.3 ms with it and 79.4 without (one core, paired runs)."""
    return x.device.type != "cpu"


class _GeluLinear(torch.autograd.Function):
    """`F.linear(F.gelu(h), weight, bias)` that keeps only h for the backward pass and recomputes GELU(h).

    Why: autograd would keep both h (for GELU's gradient) and GELU(h) (for the weight's gradient), a
    block's two largest activations (tokens x 4D each); one more GELU over h in the backward pass costs
    little next to the matrix products. TimeSformer-B training under bf16 autocast with fused attention
    (the GPU path, counted on a CPU by `timesformer-lite bench saved --dtype bf16`) keeps 562 MiB of tensors
    per clip instead of 663 (Hugging Face's: 814), and 188 MiB once a step instead of 245. Bitwise the plain
    ops' outputs and gradients, autocast included (tested): the backward runs in the dtype the forward's
    matrix product ran in.
    """

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
