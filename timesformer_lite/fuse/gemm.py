"""Which library runs a fused model's Linear layers: chosen once by `tl.fuse` for its device and dtype.

On a CPU in fp32 or bf16 the choice is between torch's matmul (`F.linear`: MKL in the official wheels for fp32)
and oneDNN (`torch.ops.mkldnn._linear_pointwise`, the op `torch.compile` emits for a CPU Linear), which also
applies GELU while the tile is in cache. Which is faster depends on the CPU (oneDNN 225 GFLOP/s against MKL's
105 on an AMD EPYC for TimeSformer-B's shapes, benchmarks/RESULTS.md), so `gemm="auto"` times both on the
model's own Linear shapes, as `torch.backends.cudnn.benchmark` times convolutions (a model whose Linears do
fewer than `TIMED_FLOPS` per clip, any toy or test model, runs in oneDNN untimed). Nothing is cached between
calls: the choice lives on the fused model (`fused.gemm`), and a fused model keeps it. Elsewhere (GPUs, fp64)
the Linears stay `nn.Linear`.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import Mlp

GEMMS = ("auto", "torch", "onednn")
# shapes whose one timed round is below this many FLOPs run in oneDNN untimed: timing them measures noise
TIMED_FLOPS = 1e9


def has_onednn_linear(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch build runs `torch.ops.mkldnn._linear_pointwise` (a private op) in `dtype` here."""
    try:
        available = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._linear_pointwise is not None
    except (AttributeError, RuntimeError):
        return False
    if dtype == torch.bfloat16:
        return available and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return available and dtype == torch.float32


def native_bf16() -> bool:
    """Whether this CPU computes bf16 products in hardware (AVX512-BF16 or AMX), where bf16 inference pays."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


class OneDnnLinear(nn.Linear):
    """An `nn.Linear` run by oneDNN's `mkldnn._linear_pointwise`, with exact GELU (as `nn.GELU()`) applied in
    the GEMM when `gelu`. Made by `tl.fuse` for a CPU model in fp32 or bf16; it runs on the CPU only (fuse the
    reference again for another device)."""

    def __init__(self, linear: nn.Linear, gelu: bool = False) -> None:
        super().__init__(linear.in_features, linear.out_features, linear.bias is not None, device="meta")
        self.weight, self.bias = linear.weight, linear.bias  # the same tensors, no copy
        self.gelu = gelu
        self.post_op = ("gelu", [], "none") if gelu else ("none", [], "")  # "none": the erf GELU, not tanh

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, *self.post_op)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gemm=onednn" + (", gelu" if self.gelu else "")


def use_onednn(model: nn.Module) -> None:
    """Every Linear of `model`'s blocks run by oneDNN (in place), each MLP's GELU inside its fc1's GEMM."""
    for mlp in [m for m in model.modules() if isinstance(m, Mlp)]:
        mlp.fc1, mlp.act = OneDnnLinear(mlp.fc1, gelu=True), nn.Identity()
    for parent in list(model.blocks.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Linear:
                setattr(parent, name, OneDnnLinear(child))


def choose_gemm(gemm: str, device: torch.device, dtype: torch.dtype, shapes: tuple[int, int, int]) -> str:
    """`gemm` checked, "auto" resolved for `device` and `dtype`: "onednn" or "torch".

    Args:
        gemm: "auto", "torch" or "onednn".
        shapes: (tokens, D, MLP width) of one clip: the Linear shapes timed for "auto".
    """
    if gemm not in GEMMS:
        raise ValueError(f"gemm={gemm!r} is not one of {', '.join(GEMMS)}")
    usable = device.type == "cpu" and has_onednn_linear(dtype)
    if gemm == "onednn" and not usable:
        raise ValueError(
            f"gemm='onednn' needs a CPU model in fp32 or bf16 and a torch build with oneDNN's "
            f"mkldnn._linear_pointwise, not {device.type} {dtype}; use gemm='torch'"
        )
    if gemm != "auto":
        return gemm
    tokens, dim, hidden = shapes
    if not usable:
        return "torch"
    if 2 * tokens * dim * (3 * dim + dim + 2 * hidden) < TIMED_FLOPS:
        return "onednn"
    return faster_gemm(tokens, dim, hidden, dtype)


def faster_gemm(tokens: int, dim: int, hidden: int, dtype: torch.dtype) -> str:
    """ "onednn" or "torch": the faster on a block's Linear shapes (qkv, proj, fc1 with GELU, fc2) for `tokens`
    rows, on this CPU at its current thread count; best of two rounds after a warm-up round."""
    gen = torch.Generator().manual_seed(0)
    seconds = {}
    with torch.no_grad():
        probes = []
        for n_in, n_out, gelu in ((dim, 3 * dim, False), (dim, dim, False), (dim, hidden, True), (hidden, dim, False)):
            linear = nn.Linear(n_in, n_out, dtype=dtype)
            probes.append((linear, OneDnnLinear(linear, gelu), torch.randn(tokens, n_in, generator=gen).to(dtype)))
        runs = {
            "onednn": lambda: [onednn(x) for _, onednn, x in probes],
            "torch": lambda: [F.gelu(plain(x)) if onednn.gelu else plain(x) for plain, onednn, x in probes],
        }
        for gemm, run in runs.items():
            run()  # warm-up
            rounds = []
            for _ in range(2):
                start = time.perf_counter()
                run()
                rounds.append(time.perf_counter() - start)
            seconds[gemm] = min(rounds)
    return min(seconds, key=seconds.get)
