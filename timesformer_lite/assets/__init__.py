"""Files shipped with the package: the trained toy model the course loads, and the history that made it.

`toy_divided.safetensors` is the divided-attention model `make run` trains on the `toy` preset (its metadata
names the command and date that made it); `toy_divided_history.json` holds that run's per-epoch records and
test numbers. `benchmarks/ship_toy_model.py` writes both from a finished run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent


def toy_model_path() -> Path:
    """The shipped toy model, a `.safetensors` checkpoint `tl.load_pretrained` reads."""
    return ASSETS / "toy_divided.safetensors"


def toy_history() -> dict[str, Any]:
    """The run that made the shipped model: `history` (one record per epoch), `test`, `command`, `date`."""
    return json.loads((ASSETS / "toy_divided_history.json").read_text())
