"""Cache-sized passes: a fused CPU model runs a large batch a few clips at a time.

Clips do not interact at inference, so a batch can pass through in parts with the same numbers; on a CPU a
working set that stays in the last-level cache is faster (TimeSformer-B at batch 4: 1.96 s per clip in parts
against 2.28 in one pass, benchmarks/RESULTS.md "tl.fuse levers"). The largest activation of a pass is the MLP's
hidden layer, tokens x MLP width, so `tl.fuse` fixes once how many tokens a pass may hold for its device and
dtype (`fused.tokens_per_pass`); a call turns that into clips from the video's shape.
"""

from __future__ import annotations

import torch

CACHE_BYTES = 24 * 2**20  # about the last-level cache of a desktop or server CPU


def tokens_per_pass(
    device: torch.device, dtype: torch.dtype, hidden: int, cache_bytes: int = CACHE_BYTES
) -> int | None:
    """Tokens whose MLP hidden layer (`hidden` wide, in `dtype`) fits in `cache_bytes` on a CPU; None (the
    whole batch in one pass) elsewhere: a GPU wants large batches."""
    if device.type != "cpu":
        return None
    return max(1, cache_bytes // (hidden * dtype.itemsize))


def clips_per_pass(tokens: int | None, batch: int, tokens_per_clip: int) -> int:
    """How many of `batch` clips of `tokens_per_clip` tokens pass at once within `tokens` (at least one)."""
    if tokens is None:
        return batch
    return max(1, min(batch, tokens // tokens_per_clip))
