"""`tl.fuse(model)`: a trained TimeSformer made into an inference-only model with the same logits, faster.

    fast = tl.fuse(model)                        # once, after training or loading; `model` is left as it was
    logits = fast(video)                         # model(video)'s logits: fp32 within 1e-5, fp64 within 1e-10
    fast16 = tl.fuse(model, dtype=torch.bfloat16)  # bf16 inference: CPUs with native bf16, GPUs

The reference model (`timesformer_lite/model/`) computes what the paper computes, as the notebooks build it.
Inference never needs all of it, and what it can skip is decided here once, not on every call, in the shape
of timm's `reparameterize_model`: a copy whose modules fold themselves into stock modules.

- Each added step's `*_fc` (temporal_fc, width_fc, local_fc) follows its attention's output projection `proj`
  with nothing in between at inference, so the two are one `nn.Linear` (`Block.fuse`) and `*_fc` becomes
  `nn.Identity`: a D x D product per token less, 12 x 1568 x 768^2 multiply-adds for divided TimeSformer-B
  (5.7 % of its 195.8 G).
- The last block computes the class token alone (`ClassAttention`, the same module a training option uses):
  the head reads nothing else, so its patch queries, keys, values and MLP are skipped.
- The patch projection writes its tokens channels-last, so they come out contiguous and no later op reads
  them strided.
- On a CPU the blocks' Linears run in the faster of torch's matmul and oneDNN (which also applies GELU in fc1's GEMM),
  timed once here on the model's shapes (`gemm.py`), and a large batch passes a few clips at a time so that
  its working set stays in cache (`batches.py`).

Every choice is stored on the fused model and printed in its repr; nothing is cached between calls. Measured
in benchmarks/RESULTS.md ("tl.fuse levers") and README "Speed". Attention maps need every token's
probabilities: ask the reference model for them, `model(video, return_attention=True)`.
"""

from .batches import CACHE_BYTES, clips_per_pass, tokens_per_pass
from .gemm import GEMMS, OneDnnLinear, choose_gemm, has_onednn_linear, native_bf16
from .model import FusedTimeSformer, fuse

__all__ = [
    "CACHE_BYTES",
    "GEMMS",
    "FusedTimeSformer",
    "OneDnnLinear",
    "choose_gemm",
    "clips_per_pass",
    "fuse",
    "has_onednn_linear",
    "native_bf16",
    "tokens_per_pass",
]
