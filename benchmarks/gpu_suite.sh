#!/usr/bin/env bash
# Every GPU row of issue 13 in one command (`python3 benchmarks/bench_model.py --suite gpu`), on a machine
# whose python3 already has torch (CUDA), transformers, einops, safetensors, pyyaml, tqdm and matplotlib --
# a GPU image, or `make` on a GPU box.
#
#   bash benchmarks/gpu_suite.sh              # eager rows: ~2 min on one H100/H200
#   bash benchmarks/gpu_suite.sh --compile    # plus the reference under torch.compile: ~6 min more
#   bash benchmarks/gpu_suite.sh --baseline none   # without the b059a52 and 04d1ef8 models (they need git and
#                                                  # the history, which a copied working tree lacks)
#
# The forward rows put `tl.fuse(model, dtype=torch.bfloat16)` (its own bf16 path, the clip cast to bf16) against
# Hugging Face under bf16 autocast; bf16 logits are compared with the fp32 reference's (bound 3e-2).
#
# The data-stall row writes and decodes toy videos, so it needs PyAV. Where pip cannot reach PyPI (the
# lent GPU machines of this project), put wheels for that machine's Python in .whl/ first, e.g. on a
# machine with PyPI:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl av==18.1.0
# They are installed into /tmp/site. Results are printed and appended to benchmarks/RESULTS.md; when
# $OUT is set (the device tool) that file, the log and nvidia-smi's view of the card are copied there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
log="${OUT:-/tmp}/gpu_suite.log"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'transformers', transformers.__version__)"
  python3 benchmarks/bench_model.py --suite gpu "$@"
} 2>&1 | tee "$log"
if [ -n "${OUT:-}" ]; then cp benchmarks/RESULTS.md "$OUT/"; fi
