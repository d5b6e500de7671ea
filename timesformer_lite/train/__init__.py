"""Training and evaluation: one loop for CPU, one GPU and many (torchrun + DDP), checkpoints, the test protocol."""

from .evaluate import EvalResult, evaluate
from .launch import launch, torchrun_command
from .protocol import test_checkpoint
from .trainer import RunResult, TrainingDiverged, run

__all__ = [
    "EvalResult",
    "RunResult",
    "TrainingDiverged",
    "evaluate",
    "launch",
    "run",
    "test_checkpoint",
    "torchrun_command",
]
