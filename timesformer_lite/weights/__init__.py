"""Weights in and out: our checkpoint format, importers for other codebases' formats, and exporters.

    model = load_pretrained("TimeSformer_k400.pdparams")   # any supported format, detected
    save_model("k400.safetensors", model)                   # ours: weights + config + class names
    save_hf("k400-hf/", model)                              # a folder transformers loads
    model = load_pretrained("facebook/timesformer-base-finetuned-k400")  # or a hub id, or a zoo name:
    path = download("paddlevideo/timesformer-k400")          # the zoo's file, cached

See docs/weights.md for the formats, what each records, and what must be passed.
"""

from .checkpoint import Checkpoint, read_checkpoint, save_model
from .fit import LoadReport
from .hf import config_from_hf, config_to_hf, save_hf, state_dict_from_hf, state_dict_to_hf
from .io import WeightsError
from .load import SOURCES, detect, load_pretrained, read_weights
from .vit import inflate
from .zoo import ZOO, class_list, download

__all__ = [
    "SOURCES",
    "ZOO",
    "Checkpoint",
    "LoadReport",
    "WeightsError",
    "class_list",
    "config_from_hf",
    "config_to_hf",
    "detect",
    "download",
    "inflate",
    "load_pretrained",
    "read_checkpoint",
    "read_weights",
    "save_hf",
    "save_model",
    "state_dict_from_hf",
    "state_dict_to_hf",
]
