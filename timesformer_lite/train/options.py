"""Training-speed options: which equivalents of the reference's ops a model is built with, for a device.

The model in `model/` computes what the paper computes with plain PyTorch ops. Some of those ops have a faster
equivalent on some hardware, chosen when the model is built (`ModelConfig` fields, as timm passes
`fused_attn`): the same numbers, faster. A field left at "auto" is resolved here for the trainer's device,
once, before the model is built, and written back into the config, so `config.yaml`, every checkpoint and
`summary.json` record the options in force:

| field (`model.`)    | what it builds                                                   | auto on    |
| ------------------- | ---------------------------------------------------------------- | ---------- |
| `fused_attn`        | `scaled_dot_product_attention` in training (false: explicit)     | GPUs       |
| `short_row_softmax` | the explicit softmax of rows under 32 written out in float32     | CPUs       |
| `recompute_gelu`    | the MLP keeps its hidden layer once and recomputes GELU          | GPUs       |
| `class_token_only`  | the last block computes only the class token (`ClassAttention`)  | both       |

Why, measured (benchmarks/RESULTS.md):

- fused attention: PyTorch's CPU flash kernel has a slow backward at small head dims: forward + backward of the
  toy preset's spatial attention (256 x 4 heads x 17 tokens, d=16) took 8.1 ms fused and 2.2 ms explicit on 2
  cores, so CPUs train on the explicit path.
- short-row softmax: torch's CPU softmax kernel is slow on rows shorter than its vector width, and in bf16
  on rows shorter than 32: the toy temporal attention (8 frames) took 3.4 ms with it and 0.75 ms written out
  in float32; under bf16 autocast, forward and backward, 8-entry rows 1.7 ms with the kernel and 0.7 written
  out in float32, 17-entry rows (a toy frame's 16 patches and its class token) 3.4 against 1.6 ms; the
  whole bf16 toy training step 1.14x faster for divided attention and 1.17x for axial (the other schemes
  0.99-1.01x) than with rows under 16 written out in bf16 and longer ones left to the kernel
  (benchmarks/RESULTS.md, "Table 1 levers").
- GELU recompute: autograd otherwise keeps the hidden layer both before and after GELU, a block's two largest
  activations; TimeSformer-B under bf16 autocast keeps 562 MiB per clip instead of 663 for the backward pass.
  On a CPU the extra GELU costs more than it saves. Dropout sits between GELU and fc2, so "auto" leaves it off
  when `model.drop_rate` > 0 (with a line saying so) and `true` is a config error there.
- class token only: the head reads the class token alone, so the last block's patch queries, output
  projection and MLP are skipped (about 30 % of the toy preset's two-block forward and backward, 5 % of
  TimeSformer-B's).

Every option is tested equal to the reference in float64 (tests/test_train_options.py).
"""

from __future__ import annotations

import dataclasses

import torch

from ..config import REFERENCE_OPTIONS, ModelConfig

OPTIONS = tuple(REFERENCE_OPTIONS)  # the ModelConfig fields this module resolves


def training_options(device: torch.device) -> dict[str, bool]:
    """The trainer's choice of every option for `device`: CPUs the explicit attention with short-row softmax,
    GPUs fused attention and the GELU recompute; the class-token-only last block on both."""
    cpu = device.type == "cpu"
    return dict(fused_attn=not cpu, short_row_softmax=cpu, recompute_gelu=not cpu, class_token_only=True)


def resolve_options(cfg: ModelConfig, device: torch.device) -> tuple[ModelConfig, list[str]]:
    """`cfg` with every option left at "auto" set to the trainer's choice for `device`, and a line for each
    choice that could not apply (GELU recompute with dropout)."""
    chosen, notes = training_options(device), []
    if chosen["recompute_gelu"] and cfg.drop_rate > 0:
        chosen["recompute_gelu"] = False
        if cfg.recompute_gelu == "auto":
            notes.append(
                f"model.recompute_gelu=auto resolves to false on {device.type}: dropout (model.drop_rate="
                f"{cfg.drop_rate}) sits between GELU and fc2"
            )
    resolved = {name: chosen[name] for name in OPTIONS if getattr(cfg, name) == "auto"}
    return dataclasses.replace(cfg, **resolved), notes


def options_of(cfg: ModelConfig) -> dict[str, bool]:
    """The options a model built from `cfg` runs with ("auto" read as the reference's)."""
    return {name: cfg.option(name) for name in OPTIONS}
