"""What an exact resume needs besides the checkpoint's tensors: which checkpoint (`train.resume`), a config that
is the same where it matters, and the random state of the process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..config import REFERENCE_OPTIONS, flatten
from .distributed import DistEnv

# keys a resumed run may change that change no step's numbers: where it reads data and writes its files, how it
# loads data (the order and augmentation of every clip are functions of seed, epoch and position, whatever the
# workers or the cache), when it validates, saves, reads the loss and tests, and how it tests
SAME_NUMBERS = (
    "train.resume",
    "train.out_dir",
    "train.name",
    "train.eval_every",
    "train.checkpoint_every",
    "train.log_every",
    "train.test",
    "train.test_average",
    "data.root",
    "data.num_workers",
    "data.cache",
    "data.num_clips",
    "data.num_crops",
)
# keys a resumed run may change although they change the numbers of every later step, and why: the run goes on
# from where it stopped, but it is no longer bitwise the run that was not stopped
OTHER_NUMBERS = {
    "train.device": "another device's kernels round differently",
    "train.compile": "compiled kernels round differently",
    "train.epochs": "the cosine schedule's length sets the learning rate of every step",
    # the training-speed options (train/options.py), resolved per device: the same function, rounded otherwise
    **{f"model.{k}": "a training-speed equivalent rounds differently" for k in REFERENCE_OPTIONS},
}


def find_resume(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint `train.resume` names: "" (start fresh), "auto" (run_dir/last.pt if it exists), a checkpoint
    file, or a run folder (its last.pt).

    Raises:
        ValueError: a folder without last.pt, or a path that does not exist; the message says what to pass.
    """
    if not resume:
        return None
    if resume == "auto":
        last = run_dir / "last.pt"
        return last if last.is_file() else None
    path = Path(resume)
    if path.is_dir():
        if (path / "last.pt").is_file():
            return path / "last.pt"
        raise ValueError(
            f"train.resume='{resume}' is a folder without last.pt; pass a run folder that has one, a checkpoint "
            "file (e.g. .../last.pt), or train.resume=auto to continue this run's own folder"
        )
    if not path.exists():
        raise ValueError(
            f"train.resume='{resume}' does not exist; pass a checkpoint file (e.g. runs/NAME/last.pt), a run "
            "folder, or train.resume=auto to continue this run's own folder"
        )
    return path


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The differences between a checkpoint's config and this run's, as "key: saved -> current".

    Returns:
        The changes a resume refuses (every key but `SAME_NUMBERS` and `OTHER_NUMBERS`), and the accepted
        changes that alter later steps' numbers, each with its reason. `train.epochs` alters them only under
        the cosine schedule: the step schedule's milestones are epochs, whatever the run's length.
    """
    a, b = flatten(saved), flatten(current)
    differ = [k for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    if b.get("train.schedule") != "cosine":
        differ = [k for k in differ if k != "train.epochs"]
    refused = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in differ if k not in SAME_NUMBERS + tuple(OTHER_NUMBERS)]
    noted = [f"{k}: {a.get(k)!r} -> {b.get(k)!r} ({OTHER_NUMBERS[k]})" for k in differ if k in OTHER_NUMBERS]
    return refused, noted


def rng_state() -> dict[str, Any]:
    """This process's torch RNG (dropout, drop path); data randomness is per clip (see sampler.py)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def rng_states(env: DistEnv) -> list[dict[str, Any]]:
    """Every rank's `rng_state()`, in rank order (each rank draws its own dropout); a collective under DDP."""
    if not env.distributed:
        return [rng_state()]
    states: list[Any] = [None] * env.world_size
    dist.all_gather_object(states, rng_state())
    return states


def set_rng_state(saved: list[dict[str, Any]] | dict[str, Any], rank: int) -> None:
    """Restore this rank's entry of what `rng_states` returned (a checkpoint of before it holds rank 0's only)."""
    state = (saved[rank] if rank < len(saved) else saved[0]) if isinstance(saved, list) else saved
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
