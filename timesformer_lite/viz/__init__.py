"""Seeing inside the model: attention maps, attention rollout, plots, and a notebook explorer.

    logits, maps = model(video, return_attention=True)
    relevance = attention_rollout(maps)                       # (B, T, h, w), sums to 1 per clip
    fig = overlay_figure(video[0], relevance[0], mean, std)   # a matplotlib Figure
    AttentionExplorer(maps, video[0], mean, std)              # widgets, in a notebook

Built in notebooks/08_attention_maps.ipynb.
"""

from .explorer import AttentionExplorer, ExplorerState, available_modes, figure_png, render, update_state
from .maps import (
    cls_space_map,
    fuse_heads,
    joint_query_map,
    scheme_of,
    space_query_map,
    time_matrix,
    time_query_map,
)
from .plots import (
    blend,
    confusion_figure,
    frames_to_uint8,
    heatmap,
    map_grid,
    overlay_figure,
    time_matrix_figure,
    upsample_map,
    write_animation,
)
from .rollout import attention_rollout, layer_matrices, rollout_matrix, step_matrix, token_index

__all__ = [
    "confusion_figure",
    "AttentionExplorer",
    "ExplorerState",
    "attention_rollout",
    "available_modes",
    "blend",
    "cls_space_map",
    "figure_png",
    "frames_to_uint8",
    "fuse_heads",
    "heatmap",
    "joint_query_map",
    "layer_matrices",
    "map_grid",
    "overlay_figure",
    "render",
    "rollout_matrix",
    "scheme_of",
    "space_query_map",
    "step_matrix",
    "time_matrix",
    "time_matrix_figure",
    "time_query_map",
    "token_index",
    "update_state",
    "upsample_map",
    "write_animation",
]
