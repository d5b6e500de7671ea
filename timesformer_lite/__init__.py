"""timesformer_lite: TimeSformer (divided space-time attention) as a course and a library.

import timesformer_lite as tl
model = tl.TimeSformer(tl.ModelConfig(num_classes=400))
logits = model(video)                       # video (B, T, 3, H, W)
logits, maps = model(video, return_attention=True)
"""

from .config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig, load_config, presets
from .fuse import fuse
from .model import AttentionMaps, TimeSformer
from .predict import predict
from .weights import load_pretrained, save_model

__version__ = "0.1.0"

__all__ = [
    "AttentionMaps",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TimeSformer",
    "TrainConfig",
    "fuse",
    "load_config",
    "load_pretrained",
    "predict",
    "presets",
    "save_model",
]
