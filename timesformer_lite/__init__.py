"""timesformer_lite: TimeSformer (divided space-time attention) as a course and a library.

import timesformer_lite as tl
model = tl.TimeSformer(tl.ModelConfig(num_classes=400))
logits = model(video)                       # video (B, T, 3, H, W)
logits, maps = model(video, return_attention=True)

Every name here, and every subpackage (`tl.data`, `tl.weights`, ...), is imported on first use (PEP 562), so
`import timesformer_lite` costs milliseconds and the command line answers `--help`, or a Ctrl-C, before
torch loads; `tl.TimeSformer` imports the model the first time it is asked for.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# the module that defines each public name
_EXPORTS = {
    "config": ("Config", "ConfigError", "DataConfig", "ModelConfig", "TrainConfig", "load_config", "presets"),
    "fuse": ("fuse",),
    "model": ("AttentionMaps", "TimeSformer"),
    "predict": ("predict",),
    "weights": ("load_pretrained", "save_model"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> object:
    """Import a public name, or a subpackage, the first time it is asked for."""
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise  # a module that the subpackage imports is missing
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


class _Package(types.ModuleType):
    """Keeps `tl.fuse` and `tl.predict` the functions of those names.

    Python binds every imported submodule on its package (`import timesformer_lite.fuse` sets the attribute
    `fuse`); for the two submodules named after the function they define, that binding would hide the function,
    so it is dropped: `sys.modules["timesformer_lite.fuse"]` is the module.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _HOME.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
