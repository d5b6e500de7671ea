"""The TimeSformer model: attention, blocks for every scheme, the full network."""

from .attention import Attention, DropPath, Mlp
from .blocks import GROUPINGS, SCHEMES, Block
from .timesformer import AttentionMaps, PatchEmbed, TimeSformer

__all__ = [
    "GROUPINGS",
    "SCHEMES",
    "Attention",
    "AttentionMaps",
    "Block",
    "DropPath",
    "Mlp",
    "PatchEmbed",
    "TimeSformer",
]
