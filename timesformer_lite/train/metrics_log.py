"""The run's metrics file: runs/<name>/metrics.jsonl (one JSON object per line), plus TensorBoard when it is
installed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..weights.io import atomic_write


class MetricsLog:
    """runs/<name>/metrics.jsonl (one JSON object per line), plus TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())  # the line is on disk before the checkpoint that follows it
        if self.tb is not None:
            step = record.get("global_step", 0)
            for k, v in record.items():
                if isinstance(v, int | float) and k not in ("epoch", "global_step") and v is not None:
                    self.tb.add_scalar(f"{record.get('split', 'train')}/{k}", v, step)

    def rewind(self, epoch: int, global_step: int) -> None:
        """Drop the records a resume from (epoch, global_step) will write again: epoch lines past `epoch`,
        other lines past `global_step`, and a line cut by a kill. A save that failed after its epoch line
        was written, or a kill between the two, would otherwise leave that epoch twice in the file."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            if record.get("split") == "epoch" and record.get("epoch", 0) > epoch:
                continue
            if record.get("split") != "epoch" and record.get("global_step", 0) > global_step:
                continue
            kept.append(line + "\n")
        atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(kept)))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
