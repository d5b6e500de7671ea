"""What a checkpoint string names: a local path (always first), a zoo entry, or a Hugging Face hub repo id.

    resolve("runs/toy/best.pt")                          # a path: used as it is
    resolve("paddlevideo/timesformer-k400")              # the zoo: downloaded once into the cache, verified each use
    resolve("facebook/timesformer-base-finetuned-k400")  # the hub: huggingface_hub's cache, then the HF reader

`read_weights` calls it first, so every place that takes a checkpoint path (`load_pretrained`, `predict
--checkpoint`, `test --checkpoint`, `convert`, `export`, `model.pretrained=`) takes the names too. A local
path wins over a zoo entry or repo of the same name, and the load report says which one was used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import model_config
from .checkpoint import Checkpoint
from .hub import hub_folder, is_repo_id
from .io import WeightsError
from .zoo import ZOO, class_list, download, url_of


@dataclass
class Resolved:
    """A local file or folder for a checkpoint string, and what its name adds to the file.

    Args:
        path: the file or folder to read.
        note: which thing the string named, for the load report; None for a plain local path.
        source: the format, when the name tells it (a zoo entry).
        overrides: `ModelConfig` fields the file does not record (a zoo entry's).
        classes: class names for a file that has none (a zoo entry's class list).
    """

    path: Path
    note: str | None = None
    source: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    classes: list[str] | None = None

    def apply(self, ckpt: Checkpoint) -> Checkpoint:
        """`ckpt` with the overrides, class names and note of the name that was resolved."""
        if self.overrides:
            model = model_config(ckpt.config.model, **self.overrides)
            ckpt.config = dataclasses.replace(ckpt.config, model=model)
            ckpt.guessed = [name for name in ckpt.guessed if name not in self.overrides]
        if self.classes is not None and ckpt.classes is None:
            if len(self.classes) != ckpt.config.model.num_classes:
                raise WeightsError(
                    f"{self.note}: {len(self.classes)} class names for a head of {ckpt.config.model.num_classes}"
                )
            ckpt.classes = self.classes
        if self.note:
            ckpt.notes.insert(0, self.note)
        return ckpt


def resolve(path: str | Path, revision: str | None = None) -> Resolved:
    """The local file or folder `path` names (downloading a zoo entry or hub repo when needed).

    Args:
        path: a local path; a `ZOO` name; or a hub repo id "org/name". A `Path` object is always a path.
        revision: for a hub repo id: a branch, tag or commit (default: the default branch).
    """
    name = str(path)
    named = isinstance(path, str) and (name in ZOO or is_repo_id(name))
    if isinstance(path, Path) or Path(name).exists():
        if revision is not None:
            raise WeightsError(f"revision={revision!r} is for Hugging Face repo ids; '{name}' is a local path")
        if not named:
            return Resolved(Path(path))
        other = f"zoo entry {name!r}" if name in ZOO else f"Hugging Face repo '{name}'"
        return Resolved(Path(name), note=f"'{name}' is the local path '{Path(name).resolve()}' (not the {other})")
    if name in ZOO:
        if revision is not None:
            raise WeightsError(f"revision={revision!r} is for Hugging Face repo ids; {name!r} is a zoo entry")
        entry = ZOO[name]
        file = download(name)
        return Resolved(
            file,
            note=f"zoo entry {name!r} ({url_of(entry) or 'shipped with the package'}), read from '{file}'",
            source=entry.source,
            overrides=dict(entry.overrides),
            classes=class_list(entry.classes) if entry.classes else None,
        )
    if is_repo_id(name):
        folder = hub_folder(name, revision)
        return Resolved(
            folder, note=f"Hugging Face repo '{name}' (revision {revision or 'main'}), read from '{folder}'"
        )
    raise FileNotFoundError(
        f"weights '{name}' do not exist; pass a file, a folder, a zoo name (timesformer-lite download --list) "
        "or a Hugging Face repo id (org/name)"
    )
