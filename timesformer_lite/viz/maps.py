"""Attention maps as pictures: pick a layer, fuse or select heads, and reshape to the patch grid.

`model(video, return_attention=True)` returns `AttentionMaps` whose tensors are indexed by token; the
helpers here turn them into grids a plot can draw:

- `cls_space_map`    class token -> the patches of each frame            (B, T, h, w)
- `space_query_map`  one query patch -> the patches of its own frame      (B, h, w)
- `time_matrix`      one patch position across frames, query x key frame  (B, T, T)
- `time_query_map`   what frame t attends to, at every patch position     (B, T, h, w)  [key frame, i, j]
- `joint_query_map`  class token or one patch -> every patch of the clip  (B, T, h, w)

Every helper takes `head`: "mean" or "max" over heads, an int to select one head, or None to keep them
all (a `heads` axis after B). Probabilities that went to the class token are dropped from patch maps, so
a map of a query that sends weight to the class token sums to less than 1.

Built in notebooks/08_attention_maps.ipynb.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor

from ..model import SCHEMES, AttentionMaps

Head = int | str | None


def scheme_of(maps: AttentionMaps) -> str:
    """The attention scheme that produced `maps`, told apart by which kinds of step they hold."""
    present = {name for name in ("space", "time", "joint", "width", "height", "local", "sparse") if getattr(maps, name)}
    for scheme, steps in SCHEMES.items():
        if {step.grouping for step in steps} == present:
            return scheme
    raise ValueError(f"attention maps hold steps {sorted(present)}, which match no scheme: pass the maps of one model")


def fuse_heads(probs: Tensor, head: Head = "mean", dim: int = 1) -> Tensor:
    """Combine the heads axis `dim` of attention probabilities.

    Args:
        probs: probabilities with a heads axis at `dim`.
        head: "mean" or "max" over heads, an int to select that head, None to leave `probs` as it is.
        dim: the heads axis.
    """
    heads = probs.shape[dim]
    if head is None:
        return probs
    if head == "mean":
        return probs.mean(dim=dim)
    if head == "max":
        return probs.amax(dim=dim)
    if isinstance(head, int) and not isinstance(head, bool):
        if not -heads <= head < heads:
            raise ValueError(f"head={head} is out of range: the maps have {heads} heads (0..{heads - 1})")
        return probs.select(dim, head)
    raise ValueError(f"head={head!r} is not understood: use 'mean', 'max', None or a head index")


def layer_probs(maps: AttentionMaps, kind: str, layer: int) -> Tensor:
    """maps.<kind>[layer], with a clear error when the model has no such step or no such layer."""
    per_layer = getattr(maps, kind)
    if not per_layer:
        raise ValueError(
            f"maps.{kind} is empty: these maps come from a {scheme_of(maps)} model, which has no {kind} attention"
        )
    if not -len(per_layer) <= layer < len(per_layer):
        raise ValueError(
            f"layer={layer} is out of range: the maps have {len(per_layer)} layers (0..{len(per_layer) - 1})"
        )
    return per_layer[layer]


def _check_patch(maps: AttentionMaps, row: int, col: int, frame: int | None = None) -> None:
    T, h, w = maps.grid
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"patch (row={row}, col={col}) is outside the {h}x{w} patch grid")
    if frame is not None and not 0 <= frame < T:
        raise ValueError(f"frame={frame} is out of range: the clip has {T} frames (0..{T - 1})")


def cls_space_map(maps: AttentionMaps, layer: int, head: Head = "mean") -> Tensor:
    """Spatial attention of the class token (its copy in each frame) to that frame's patches.

    Returns (B, T, h, w), or (B, heads, T, h, w) with head=None.
    """
    T, h, w = maps.grid
    probs = fuse_heads(layer_probs(maps, "space", layer), head, dim=2)  # (B, T, [heads,] 1+N, 1+N)
    row = probs[..., 0, 1:]  # (B, T, [heads,] N)
    if head is None:
        return rearrange(row, "b t heads (h w) -> b heads t h w", h=h, w=w)
    return rearrange(row, "b t (h w) -> b t h w", h=h, w=w)


def space_query_map(maps: AttentionMaps, layer: int, frame: int, row: int, col: int, head: Head = "mean") -> Tensor:
    """Spatial attention of patch (row, col) of `frame` to the patches of the same frame.

    Returns (B, h, w), or (B, heads, h, w) with head=None.
    """
    _check_patch(maps, row, col, frame)
    T, h, w = maps.grid
    probs = fuse_heads(layer_probs(maps, "space", layer)[:, frame], head, dim=1)  # (B, [heads,] 1+N, 1+N)
    return probs[..., 1 + row * w + col, 1:].unflatten(-1, (h, w))


def time_matrix(maps: AttentionMaps, layer: int, row: int, col: int, head: Head = "mean") -> Tensor:
    """Temporal attention at patch position (row, col): query frame x key frame.

    Returns (B, T, T), or (B, heads, T, T) with head=None; every row sums to 1.
    """
    _check_patch(maps, row, col)
    h, w = maps.grid[1:]
    probs = layer_probs(maps, "time", layer)[:, row * w + col]  # (B, heads, T, T)
    return fuse_heads(probs, head, dim=1)


def time_query_map(maps: AttentionMaps, layer: int, frame: int, head: Head = "mean") -> Tensor:
    """Temporal attention of `frame` at every patch position, laid out over key frames: [key frame, i, j].

    Returns (B, T, h, w), or (B, heads, T, h, w) with head=None; it sums to 1 over the key frames.
    """
    _check_patch(maps, 0, 0, frame)
    h, w = maps.grid[1:]
    probs = fuse_heads(layer_probs(maps, "time", layer)[..., frame, :], head, dim=2)  # (B, N, [heads,] T)
    if head is None:
        return rearrange(probs, "b (h w) heads t -> b heads t h w", h=h, w=w)
    return rearrange(probs, "b (h w) t -> b t h w", h=h, w=w)


def joint_query_map(
    maps: AttentionMaps, layer: int, query: tuple[int, int, int] | None = None, head: Head = "mean"
) -> Tensor:
    """Joint space-time attention of the class token (query=None) or of patch (frame, row, col) to every patch.

    Returns (B, T, h, w), or (B, heads, T, h, w) with head=None.
    """
    T, h, w = maps.grid
    index = 0
    if query is not None:
        frame, row, col = query
        _check_patch(maps, row, col, frame)
        index = 1 + frame * h * w + row * w + col  # tokens are ordered (t, n) after the class token
    probs = fuse_heads(layer_probs(maps, "joint", layer), head, dim=1)  # (B, [heads,] 1+T*N, 1+T*N)
    return probs[..., index, 1:].unflatten(-1, (T, h, w))
