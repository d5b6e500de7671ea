"""Seeing inside the model: attention maps, attention rollout, plots, and a notebook explorer.

Built in notebooks/08_attention_maps.ipynb.
"""

from .maps import (
    cls_space_map,
    fuse_heads,
    joint_query_map,
    scheme_of,
    space_query_map,
    time_matrix,
    time_query_map,
)
from .rollout import attention_rollout, layer_matrices, rollout_matrix, step_matrix, token_index

__all__ = [
    "attention_rollout",
    "cls_space_map",
    "fuse_heads",
    "joint_query_map",
    "layer_matrices",
    "rollout_matrix",
    "scheme_of",
    "space_query_map",
    "step_matrix",
    "time_matrix",
    "time_query_map",
    "token_index",
]
