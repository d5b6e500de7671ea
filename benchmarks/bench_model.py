"""Model speed against Hugging Face Timesformer (issue #8): the same as `timesformer-lite bench`.

    python benchmarks/bench_model.py --suite cpu          # CPU rows, a few minutes on 2 cores
    python benchmarks/bench_model.py --suite gpu          # every GPU row in one run
    python benchmarks/bench_model.py forward --device cuda --dtype bf16 --batch 32
    python benchmarks/bench_model.py --help

The code lives in `timesformer_lite/bench.py`, so the installed CLI runs the same thing; results are
appended to benchmarks/RESULTS.md under "## Model speed vs Hugging Face".
"""

import sys

from timesformer_lite.bench import main

if __name__ == "__main__":
    sys.exit(main())
