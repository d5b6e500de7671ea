"""A past commit's `timesformer_lite` imported beside the current one, so one run can time both.

    pkg = load_package("04d1ef8")             # the package as it was at that commit: timesformer_lite_04d1ef8
    old = baseline_model(pkg, model)           # its TimeSformer holding `model`'s weights

`git archive COMMIT timesformer_lite` is unpacked into a temporary folder (removed when the process ends), the
package folder renamed `timesformer_lite_<commit>` and every `timesformer_lite` name in its Python files (a
few absolute imports, importlib and logger names; the rest are relative) rewritten to the new name, so the two
packages share nothing.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from torch import nn

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "timesformer_lite"
_loaded: dict[str, ModuleType] = {}


def package_name(commit: str) -> str:
    """The name the package of `commit` is imported under."""
    return f"{PACKAGE}_{commit}"


def load_package(commit: str, repo: Path = REPO) -> ModuleType:
    """`timesformer_lite` as it was at `commit` of `repo`, imported as `timesformer_lite_<commit>`.

    Args:
        commit: a commit git can resolve in `repo` (a hash, tag or branch; letters, digits, `._-` only).
        repo: the git checkout to read it from.
    Raises:
        RuntimeError: git is missing, `repo` is not a git checkout, or `commit` is unknown there.
    """
    if commit in _loaded:
        return _loaded[commit]
    if not re.fullmatch(r"[\w.-]+", commit):
        raise ValueError(f"baseline commit {commit!r}: give a hash, tag or branch name")
    if shutil.which("git") is None:
        raise RuntimeError(f"baseline {commit}: git is not installed; pass --baseline none to skip that row")
    root = Path(tempfile.mkdtemp(prefix="tl_baseline_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit, PACKAGE], capture_output=True)
    if archive.returncode != 0:
        why = archive.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"baseline {commit}: git archive failed ({why[0]}); pass --baseline none to skip it")
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    name = package_name(commit)
    target = root / name
    (root / PACKAGE).rename(target)
    word = re.compile(rf"\b{PACKAGE}\b")
    for path in target.rglob("*.py"):
        path.write_text(word.sub(name, path.read_text()))
    sys.path.insert(0, str(root))
    try:
        _loaded[commit] = importlib.import_module(name)
    finally:
        sys.path.remove(str(root))  # the package is imported; later lazy imports find it in sys.modules
    return _loaded[commit]


def baseline_model(package: ModuleType, model: nn.Module) -> nn.Module:
    """`package`'s TimeSformer built from `model`'s config, holding a copy of its weights (the state-dict
    names are the same in every commit), on its device and in its mode.

    Config fields added since that commit must be at their defaults (the old model cannot do anything else).
    """
    known = {f.name for f in dataclasses.fields(package.ModelConfig)}
    default = type(model.cfg)()
    new = {k: v for k, v in vars(model.cfg).items() if k not in known and v != getattr(default, k)}
    if new:
        raise ValueError(f"the baseline's ModelConfig has no {', '.join(new)}: benchmark it at its default")
    old = package.TimeSformer(package.ModelConfig(**{k: v for k, v in vars(model.cfg).items() if k in known}))
    old.load_state_dict(model.state_dict(), strict=True)
    param = next(model.parameters())
    return old.to(device=param.device, dtype=param.dtype).train(model.training)
