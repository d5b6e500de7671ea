"""`tl.fuse(model)`: a trained TimeSformer made into an inference-only model with the same logits, faster.

    fast = tl.fuse(model)            # once, after training or loading; `model` is left as it was
    logits = fast(video)             # the same logits as model(video): fp32 within 1e-5, fp64 within 1e-10

The reference model (`timesformer_lite/model/`) computes what the paper computes, as the notebooks build it.
Inference never needs all of that, and what it can skip is decided here once, not on every call (RepVGG's
`switch_to_deploy`, YOLO's `fuse()`):

- Each added step's `*_fc` (temporal_fc, width_fc, local_fc) follows the attention's output projection
  `proj` with nothing in between at inference, so the two are one `nn.Linear`: W = W_fc @ W_proj,
  b = W_fc @ b_proj + b_fc, computed in float64 and stored in the model's dtype. A D x D product per token
  less (4.7 % of TimeSformer-B's forward FLOPs); the fused model holds a copy, so nothing goes stale.
- The last block computes the class token alone: the head reads nothing else. Its last step needs the
  class token's query against every key, and not even keys or values (`FusedAttention.first_query`), and
  its MLP runs on the class token only (about 5 % of the forward FLOPs).
- Residual adds and GELU write in place into tensors the fused model made itself, and the patch embedding
  writes its tokens contiguous (channels-last), so no later op reads them strided.
- On the CPU in fp32, the Linear layers run in whichever GEMM library is faster on this machine for the
  model's own shapes, timed once per process (`gemm="auto"`, as `torch.backends.cudnn.benchmark` picks
  convolution kernels): torch's matmul (MKL in the official wheels) or oneDNN
  (`torch.ops.mkldnn._linear_pointwise`, the op `torch.compile` emits for a CPU Linear), which also applies
  GELU while the tile is in cache. On other devices, other dtypes and under autocast: `F.linear`.
- A CPU batch runs clip by clip when one pass's largest activation (tokens x MLP width) would outgrow the
  cache (`cache_bytes`): clips do not interact in inference, and a working set that stays in cache is faster.

Measured (benchmarks/RESULTS.md, "tl.fuse levers"; README "Speed"). Attention maps need every token's
probabilities: ask the reference model for them, `model(video, return_attention=True)`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .model import Attention, Block, TimeSformer
from .model.blocks import GROUPINGS, Step, lengths

GEMMS = ("auto", "torch", "onednn")
CACHE_BYTES = 24 * 2**20  # about the last-level cache of a desktop or server CPU


def has_onednn_linear() -> bool:
    """Whether this torch build registers `torch.ops.mkldnn._linear_pointwise` (a private op)."""
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._linear_pointwise is not None
    except (AttributeError, RuntimeError):
        return False


class Linear(nn.Linear):
    """An `nn.Linear` that can run its fp32 CPU inference through oneDNN, with GELU applied in the GEMM.

    `onednn` is set once by `fuse`; the op is used only where it applies (a CPU fp32 input, no autocast),
    so the module keeps working after `.to("cuda")`, `.double()` or under `torch.autocast`. Forward hooks
    fire as for any Linear.
    """

    onednn: bool = False

    def forward(self, x: Tensor, gelu: bool = False) -> Tensor:
        """`F.linear(x)`, then exact GELU (as `nn.GELU()`) if `gelu`."""
        if self.onednn and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"):
            act, algorithm = ("gelu", "none") if gelu else ("none", "")  # "none": the erf GELU
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, act, [], algorithm)
        out = F.linear(x, self.weight, self.bias)
        return torch.ops.aten.gelu_(out) if gelu else out  # in place: no second tokens x 4D buffer

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gemm={'onednn' if self.onednn else 'torch'}"


def _linear(weight: Tensor, bias: Tensor | None) -> Linear:
    """A `Linear` holding copies of `weight` (out, in) and `bias`, on their device and in their dtype."""
    layer = nn.utils.skip_init(  # no random init of what is overwritten next
        Linear, weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def copy_linear(layer: nn.Linear) -> Linear:
    """A `Linear` with a copy of `layer`'s weight and bias."""
    return _linear(layer.weight, layer.bias)


def fold_linears(outer: nn.Linear, inner: nn.Linear) -> Linear:
    """`outer(inner(x))` as one `Linear`: W = W_outer @ W_inner, b = W_outer @ b_inner + b_outer.

    Computed in float64 on the CPU (every device has it there), then stored in `inner`'s dtype and device,
    so the fold rounds once, like the single product it replaces.
    """

    def f64(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.detach().to("cpu", torch.float64)

    w_out, b_out, w_in, b_in = f64(outer.weight), f64(outer.bias), f64(inner.weight), f64(inner.bias)
    weight = w_out @ w_in
    bias = None if b_in is None and b_out is None else torch.zeros(weight.shape[0], dtype=torch.float64)
    if b_in is not None:
        bias += w_out @ b_in
    if b_out is not None:
        bias += b_out
    like = inner.weight
    return _linear(weight.to(like.device, like.dtype), None if bias is None else bias.to(like.device, like.dtype))


def _autocast_off(x: Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off on x's device, where that device has autocast."""
    if torch.amp.is_autocast_available(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


class PatchEmbed(nn.Module):
    """The reference `PatchEmbed` (a strided Conv2d, `proj`) with the frames passed in channels-last, so the
    convolution writes its output channels-last and the tokens (B, T, h, w, D) come out contiguous.

    Why: channels-first, the tokens would be D-major in memory, and every later op (the rearranged copies,
    `cat`, the residual adds) would read them strided.
    """

    def __init__(self, patch_embed: nn.Module) -> None:
        super().__init__()
        self.proj = copy.deepcopy(patch_embed.proj)

    def forward(self, video: Tensor) -> Tensor:
        """(B, T, C, H, W) -> (B, T, h, w, D), contiguous; pixels beyond the last whole patch are dropped."""
        frames = video.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        x = self.proj(frames)  # (B*T, D, h, w), stored channels-last
        return x.permute(0, 2, 3, 1).unflatten(0, (video.shape[0], -1)).contiguous()  # no copy when dense


class FusedAttention(nn.Module):
    """A reference `Attention` at inference, with an optional `*_fc` folded into its output projection.

    Args:
        attn: the reference attention (its weights are copied).
        fc: the step's `*_fc` that follows `attn.proj`, or None for the step with the class token.
    """

    def __init__(self, attn: Attention, fc: nn.Linear | None = None) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.scale = attn.num_heads, attn.head_dim, attn.scale
        self.qkv = copy_linear(attn.qkv)
        self.proj = copy_linear(attn.proj) if fc is None else fold_linears(fc, attn.proj)

    def forward(self, x: Tensor) -> Tensor:
        """x: (S, L, D) sequences, normalised -> (S, L, D) after the (folded) output projection."""
        S, L, D = x.shape
        qkv = self.qkv(x).reshape(S, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(*qkv.unbind(0))  # q, k, v: each (S, heads, L, d)
        return self.proj(out.transpose(1, 2).reshape(S, L, D))

    def first_query(self, x: Tensor) -> Tensor:
        """`self(x)[:, 0]`, the output for the first token alone, (S, D): its query against every key.

        One query needs no keys or values: with k_j = W_k x_j + b_k and v_j = W_v x_j + b_v (one head),

            q . k_j = (W_k^T q) . x_j + q . b_k         sum_j p_j v_j = W_v (sum_j p_j x_j) + b_v

        so the query is pulled back through W_k to the tokens and the attention-weighted token average is
        pushed forward through W_v: D-wide vectors per head instead of the L x D x 2D key and value
        products (3.7 of TimeSformer-B's 392 GFLOP). The same numbers up to rounding.
        """
        S, L, D = x.shape
        H, d = self.num_heads, self.head_dim
        w_q, w_k, w_v = self.qkv.weight.view(3, H, d, D).unbind(0)
        b_q, b_k, b_v = (None,) * 3 if self.qkv.bias is None else self.qkv.bias.view(3, H, d).unbind(0)
        q = F.linear(x[:, 0], w_q.reshape(D, D), None if b_q is None else b_q.reshape(D)).view(S, H, d) * self.scale
        # D-wide products, cheap in the tokens' own precision: fp32 under autocast (LayerNorm's output), where
        # bf16 would round W_k^T q and the average, not only k and v
        with _autocast_off(x):
            q, w_k, w_v = q.to(x.dtype), w_k.to(x.dtype), w_v.to(x.dtype)
            logits = torch.einsum("shd,hdc->shc", q, w_k) @ x.transpose(1, 2)  # (S, H, L): q . (W_k x_j)
            if b_k is not None:
                logits = logits + (q * b_k.to(x.dtype)).sum(-1, keepdim=True)
            out = torch.einsum("shc,hdc->shd", logits.softmax(-1) @ x, w_v)  # W_v (sum_j p_j x_j), (S, H, d)
            if b_v is not None:
                out = out + b_v.to(x.dtype)
        return self.proj(out.reshape(S, D))


class FusedMlp(nn.Module):
    """The reference `Mlp` at inference: fc1 with GELU applied in place (or inside oneDNN's GEMM), fc2."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.fc1, self.fc2 = copy_linear(mlp.fc1), copy_linear(mlp.fc2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x, gelu=True))


class FusedBlock(nn.Module):
    """A reference `Block` at inference: its steps with `*_fc` folded into `proj`, residuals added in place.

    Submodule names follow the reference (`{prefix}norm1`, `{prefix}attn`, `norm2`, `mlp`); there is no
    `{prefix}fc`, it lives in `{prefix}attn.proj`.
    """

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.steps: tuple[Step, ...] = block.steps
        for step in self.steps:
            fc = None if step.with_cls else getattr(block, f"{step.prefix}fc")
            self.add_module(f"{step.prefix}norm1", copy.deepcopy(getattr(block, f"{step.prefix}norm1")))
            self.add_module(f"{step.prefix}attn", FusedAttention(getattr(block, f"{step.prefix}attn"), fc))
        self.norm2 = copy.deepcopy(block.norm2)
        self.mlp = FusedMlp(block.mlp)

    def attend(
        self, step: Step, x: Tensor, cls: Tensor, grid: tuple[int, int], cls_only: bool = False
    ) -> tuple[Tensor, Tensor]:
        """One residual attention step: x (B, T, N, D), updated in place, and cls (B, D) -> x, the new cls.

        `cls_only` (the step with the class token): update the class token alone, x is left as it came.
        """
        B, T, N, D = x.shape
        pattern = GROUPINGS[step.grouping].pattern
        sizes = lengths(pattern, B, T, *grid)
        seq = rearrange(x, pattern, **sizes)  # (S, L, D): S = B * groups sequences, b outermost
        S = seq.shape[0]
        norm, attn = getattr(self, f"{step.prefix}norm1"), getattr(self, f"{step.prefix}attn")
        if step.with_cls:  # a copy of the class token in front of every sequence
            seq = norm(torch.cat([cls.repeat_interleave(S // B, dim=0)[:, None], seq], dim=1))
            if cls_only:
                return x, cls + attn.first_query(seq).reshape(B, S // B, D).mean(dim=1)
            out = attn(seq)
            cls = cls + out[:, 0].reshape(B, S // B, D).mean(dim=1)  # the copies, averaged back
            out = out[:, 1:]
        else:
            out = attn(norm(seq))
        return x.add_(rearrange(out, " -> ".join(reversed(pattern.split(" -> "))), **sizes)), cls

    def forward(self, x: Tensor, cls: Tensor, grid: tuple[int, int], cls_only: bool = False) -> tuple[Tensor, Tensor]:
        """x: (B, T, N, D), a tensor the fused model made (updated in place), cls: (B, D) -> x, cls.

        `cls_only`: the last block, whose patch outputs nothing reads: the last step's patch queries and the
        patch tokens' MLP are skipped, and x is returned as the last step saw it.
        """
        for i, step in enumerate(self.steps):
            x, cls = self.attend(step, x, cls, grid, cls_only=cls_only and i == len(self.steps) - 1)
        if not cls_only:
            x.add_(self.mlp(self.norm2(x)))
        return x, cls + self.mlp(self.norm2(cls))


class FusedTimeSformer(nn.Module):
    """A `TimeSformer` made inference-only by `fuse`: `fused(video) -> logits`, the reference's numbers.

    Holds copies: `shell` is the reference without its blocks (its position and time embeddings, resized
    exactly as the reference resizes them, final norm and head; its `embed` runs, with a channels-last
    `PatchEmbed`), and `blocks` are `FusedBlock`s. `classes`, `run_config`, `load_report` and `cfg` are the source model's, so
    `predict`, `test` and `export` use it as they use the model. Build it with `tl.fuse(model)`.

    Args:
        model: the reference model (copied; not changed).
        gemm: "torch" or "onednn", the library fp32 CPU Linears run in (see `fuse`).
        split_batches: CPU batches run clip by clip when one pass would outgrow `cache_bytes`.
    """

    def __init__(self, model: TimeSformer, gemm: str = "torch", split_batches: bool = True) -> None:
        super().__init__()
        memo = {id(model.blocks): nn.ModuleList(), id(model.patch_embed): PatchEmbed(model.patch_embed)}
        self.shell = copy.deepcopy(model, memo=memo)
        self.blocks = nn.ModuleList(FusedBlock(blk) for blk in model.blocks)
        self.cfg = self.shell.cfg
        self.classes, self.run_config, self.load_report = model.classes, model.run_config, model.load_report
        self.split_batches = split_batches
        self.cache_bytes = CACHE_BYTES
        self.gemm = gemm
        for m in self.modules():
            if isinstance(m, Linear):
                m.onednn = gemm == "onednn"
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FusedTimeSformer:
        """Only `train(False)` / `eval()`: a fused model is inference-only."""
        if mode:
            raise RuntimeError("a fused model is inference-only: train the reference model, then tl.fuse(model) again")
        return super().train(False)

    def clips_per_pass(self, video: Tensor) -> int:
        """How many clips pass through at once: on the CPU (with `split_batches`), as many as keep the largest
        activation (tokens x MLP width) within `cache_bytes`, at least one; elsewhere the whole batch."""
        B, T, _, H, W = video.shape
        if not self.split_batches or video.device.type != "cpu":
            return B
        p = self.cfg.patch_size
        per_clip = T * (H // p) * (W // p) * self.blocks[0].mlp.fc1.out_features * video.element_size()
        return max(1, min(B, self.cache_bytes // per_clip))

    def forward(self, video: Tensor, return_attention: bool = False) -> Tensor:
        """video (B, T, C, H, W), normalised -> logits (B, num_classes)."""
        if return_attention:
            raise ValueError(
                "a fused model computes logits only: ask the reference model for attention maps, "
                "model(video, return_attention=True)"
            )
        self.shell._check(video)
        with torch.no_grad():
            step = self.clips_per_pass(video)
            if step < video.shape[0]:  # clip by clip: the same numbers, from a working set that stays in cache
                return torch.cat([self._logits(part) for part in video.split(step)])
            return self._logits(video)

    def _logits(self, video: Tensor) -> Tensor:
        B, T, _, H, W = video.shape
        grid = (H // self.cfg.patch_size, W // self.cfg.patch_size)
        x, cls = self.shell.embed(video)  # x is a new tensor: the blocks may add into it
        space_only = self.cfg.attention_type == "space_only"
        if space_only:  # every frame is its own image with its own class token
            x = x.reshape(B * T, 1, *x.shape[2:])
            cls = cls.repeat_interleave(T, dim=0)
        for i, blk in enumerate(self.blocks):
            x, cls = blk(x, cls, grid, cls_only=i == len(self.blocks) - 1)
        if space_only:
            cls = cls.reshape(B, T, -1).mean(dim=1)  # average the frames before the final norm
        return self.shell.head(self.shell.norm(cls))


@functools.cache
def faster_gemm(tokens: int, dim: int, hidden: int, qkv_bias: bool = True) -> str:
    """ "onednn" or "torch": the faster for a block's fp32 Linear shapes (qkv, proj, fc1 with GELU, fc2) on
    `tokens` rows, on this CPU, one thread as configured. Timed once per process and shape set (as
    `torch.backends.cudnn.benchmark` caches its choice per shape), so every model fused here with these shapes
    runs the same kernels and gives the same numbers."""
    if not has_onednn_linear():
        return "torch"
    gen = torch.Generator().manual_seed(0)
    shapes = (
        (dim, 3 * dim, qkv_bias, False),
        (dim, dim, True, False),
        (dim, hidden, True, True),
        (hidden, dim, True, False),
    )
    seconds = {}
    with torch.no_grad():
        for gemm in ("onednn", "torch"):
            probes = []
            for n_in, n_out, bias, gelu in shapes:
                weight = torch.randn(n_out, n_in, generator=gen) * n_in**-0.5
                probe = _linear(weight, torch.zeros(n_out) if bias else None)
                probe.onednn = gemm == "onednn"
                probes.append((probe, torch.randn(tokens, n_in, generator=gen), gelu))
            best = float("inf")
            for _ in range(3):  # the first round warms up; best of the other two
                start = time.perf_counter()
                for probe, x, gelu in probes:
                    probe(x, gelu=gelu)
                best = min(best, time.perf_counter() - start)
            seconds[gemm] = best
    return min(seconds, key=seconds.get)


def fuse(model: TimeSformer, gemm: str = "auto", split_batches: bool = True) -> FusedTimeSformer:
    """An inference-only copy of `model` with the same logits, faster (see the module docstring).

    `model` is not changed: its parameters, gradients and mode stay as they are, and training it later does
    not change the fused copy (fuse again for the new weights). Any scheme, frame count and image size the
    model takes; CPU or GPU, fp32, fp64, or under autocast. `fused(video, return_attention=True)` is an error:
    the maps come from the reference model.

    A model that is already fused is returned as it is.

    Args:
        model: a reference `TimeSformer`.
        gemm: the library fp32 CPU Linears run in: "auto" (the faster on one clip of the model's own Linear
            shapes, timed once per process, see `faster_gemm`; torch's where oneDNN is not built), "torch"
            (`F.linear`: MKL in the official wheels) or "onednn" (`mkldnn._linear_pointwise`).
        split_batches: CPU batches run clip by clip when one pass would outgrow the cache (`cache_bytes`).
            Export passes `gemm="torch", split_batches=False`: plain ops a trace can follow, any batch.
    Returns:
        A `FusedTimeSformer`.
    """
    if isinstance(model, FusedTimeSformer):
        return model
    if not isinstance(model, TimeSformer):
        raise TypeError(f"tl.fuse takes a TimeSformer, got {type(model).__name__}")
    if gemm not in GEMMS:
        raise ValueError(f"gemm={gemm!r} is not one of {', '.join(GEMMS)}")
    if gemm == "onednn" and not has_onednn_linear():
        raise ValueError("gemm='onednn': this torch build has no mkldnn._linear_pointwise; use gemm='torch'")
    if gemm == "auto":  # timed on the CPU only: elsewhere the Linears run F.linear anyway
        cfg = model.cfg
        on_cpu = next(model.parameters()).device.type == "cpu" and len(model.blocks) > 0
        hidden = model.blocks[0].mlp.fc1.out_features if on_cpu else 0
        gemm = faster_gemm(cfg.num_frames * cfg.grid**2, cfg.embed_dim, hidden, cfg.qkv_bias) if on_cpu else "torch"
    return FusedTimeSformer(model, gemm, split_batches)
