"""`FusedTimeSformer` and `fuse`: the reparameterization of a trained reference model into its inference form."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ..model import TimeSformer
from .batches import clips_per_pass, tokens_per_pass
from .gemm import choose_gemm, use_onednn

DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


class FusedTimeSformer(TimeSformer):
    """A `TimeSformer` in its inference form, made by `tl.fuse(model)`: `fused(video) -> logits`, the reference's
    numbers. It runs the reference's own code (`Block.attend`, `ClassAttention`, ...) on folded modules.

    Its choices are made once by `fuse` for its device and dtype, and printed in its repr:

    - `dtype`, `device`: what the weights were cast to and live on;
    - `gemm`: "onednn" or "torch", the library its blocks' Linears run in (`fuse/gemm.py`);
    - `tokens_per_pass`: a CPU batch passes a few clips at a time, at most this many tokens (None: the whole
      batch; `fuse/batches.py`).

    `classes`, `run_config` and `load_report` are the source model's, so `predict`, `test` and `export` use it
    as they use the model. It cannot train, return attention maps or be saved as a reference checkpoint (its
    `*_fc` live inside `proj`): those come from the reference model.
    """

    def __init__(self, cfg, dtype: torch.dtype, device: torch.device, gemm: str, tokens: int | None) -> None:
        super().__init__(cfg)
        self.dtype, self.device, self.gemm, self.tokens_per_pass = dtype, device, gemm, tokens

    def _apply(self, fn, recurse: bool = True) -> FusedTimeSformer:
        """Every move and cast `nn.Module` makes (`.to`, `.cuda`, `.half`, ...) passes here: one that would take
        the weights off the device or dtype the model was fused for is refused, since its GEMM library and
        batch splitting were chosen for those (a cast or move to where it already is passes)."""
        fused_for = getattr(self, "device", None), getattr(self, "dtype", None)  # None while `fuse` builds it
        if None not in fused_for:
            probe = fn(torch.empty(0, device=fused_for[0], dtype=fused_for[1]))
            if (probe.device, probe.dtype) != fused_for:
                raise RuntimeError(
                    f"this fused model was made for {fused_for[0]}, {fused_for[1]} (its GEMM library and batch "
                    f"splitting were chosen for them) and cannot move to {probe.device}, {probe.dtype}: fuse the "
                    f"reference model there, tl.fuse(model.to({str(probe.device)!r}), dtype={probe.dtype})"
                )
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> FusedTimeSformer:
        """Only `train(False)` / `eval()`: a fused model is inference-only."""
        if mode:
            raise RuntimeError("a fused model is inference-only: train the reference model, then tl.fuse(model) again")
        return super().train(False)

    def forward(self, video: Tensor, return_attention: bool = False) -> Tensor:
        """video (B, T, C, H, W), normalised -> logits (B, num_classes), without autograd."""
        if return_attention:
            raise ValueError(
                "a fused model computes logits only: ask the reference model for attention maps, "
                "model(video, return_attention=True)"
            )
        self._check(video)
        B, T, _, H, W = video.shape
        step = clips_per_pass(self.tokens_per_pass, B, T * (H // self.cfg.patch_size) * (W // self.cfg.patch_size))
        with torch.no_grad():
            if step >= B:
                return super().forward(video)
            forward = super().forward  # a few clips at a time: the same numbers, from a working set in cache
            return torch.cat([forward(part) for part in video.split(step)])

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, device={self.device}, gemm={self.gemm}, tokens_per_pass={self.tokens_per_pass}"


def inference_options(device: torch.device, dtype: torch.dtype) -> dict[str, bool]:
    """The model options a fused model is built with: the last block computes the class token alone; attention
    runs in SDPA, except on a CPU in bf16, where torch's SDPA kernel is the slower (TimeSformer-B's spatial
    attention 42 vs 22 ms explicit, its temporal 17 vs 5.6 ms explicit with `ShortRowSoftmax`; in fp32 SDPA is
    the faster for the spatial one, 38 vs 47 ms: benchmarks/RESULTS.md "tl.fuse levers")."""
    explicit = device.type == "cpu" and dtype == torch.bfloat16
    return dict(fused_attn=not explicit, short_row_softmax=explicit, recompute_gelu=False, class_token_only=True)


def fuse(
    model: TimeSformer, dtype: torch.dtype | None = None, gemm: str = "auto", split_batches: bool = True
) -> FusedTimeSformer:
    """An inference-only copy of `model` with the same logits, faster (timm's `reparameterize_model`).

    The copy is built with the inference options (`class_token_only`: its last block computes the class token
    alone) and `model`'s weights, then each module folds itself (`Block.fuse`: every `*_fc` into its attention's
    `proj`), the weights are cast to `dtype`, the patch projection is stored channels-last (its tokens come out
    contiguous), and the Linears move to the GEMM library chosen for the device and dtype. `model` is not
    changed, and training it later does not change the copy (fuse again for the new weights).

    Args:
        model: a reference `TimeSformer` (a fused one is returned as it is).
        dtype: the fused model's dtype; None keeps `model`'s. `torch.bfloat16` is the fast path on CPUs with
            native bf16 (AVX512-BF16, AMX: `fuse.native_bf16()`) and on GPUs (logits within about 2e-2 of fp32).
        gemm: "auto" (see `fuse/gemm.py`: oneDNN or torch's matmul, whichever is faster on this CPU for the
            model's shapes; torch's off the CPU), "torch" (`nn.Linear`, plain ops) or "onednn".
        split_batches: a CPU batch passes a few clips at a time when one pass would outgrow the cache.
            Export passes `gemm="torch", split_batches=False`: plain ops a trace can follow, any batch.
    Returns:
        A `FusedTimeSformer` on `model`'s device.
    """
    if isinstance(model, FusedTimeSformer) and dtype in (None, model.dtype):
        return model
    if not isinstance(model, TimeSformer) or isinstance(model, FusedTimeSformer):
        raise TypeError(f"tl.fuse takes a reference TimeSformer, got {type(model).__name__}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype} is not one of {', '.join(map(str, DTYPES))}")
    source = next(model.parameters())
    dtype, device, cfg = dtype or source.dtype, source.device, model.cfg
    hidden = cfg.mlp_hidden
    gemm = choose_gemm(gemm, device, dtype, (cfg.num_frames * cfg.grid**2, cfg.embed_dim, hidden))
    tokens = tokens_per_pass(device, dtype, hidden) if split_batches else None
    with torch.device("meta"):  # no initialisation of what the weights replace
        fused = FusedTimeSformer(
            dataclasses.replace(cfg, **inference_options(device, dtype)), dtype, device, gemm, tokens
        )
    fused.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()}, assign=True)
    for block in fused.blocks:
        block.fuse()  # in the source precision: the folds round once more, to `dtype`, below
    fused.to(dtype).patch_embed.proj.to(memory_format=torch.channels_last)
    if gemm == "onednn":
        use_onednn(fused)
    fused.classes, fused.run_config, fused.load_report = model.classes, model.run_config, model.load_report
    return fused.requires_grad_(False).eval()
