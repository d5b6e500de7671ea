"""An ipywidgets explorer of attention maps: layer, head, frame, query patch and mode, drawn as a PNG.

The logic is two pure functions a test (or a script) calls without a browser:

    state = ExplorerState(layer=1, mode="rollout")
    state = update_state(state, {"row": 2, "col": 3}, maps)   # validated against the maps
    fig = render(state, maps, frames, mean, std)              # a matplotlib Figure

`AttentionExplorer(maps, frames)` only wires widgets to them: sliders and drop-downs change the state, a
grid of buttons picks the query patch by clicking (no custom JavaScript), and an `ipywidgets.Image`
shows the rendered PNG. Modes:

- "space-cls":   the class token's spatial attention, every frame (joint models: over the whole clip)
- "space-patch": what the query patch (frame, row, col) attends to in its frame (joint: in the clip)
- "time":        the T x T temporal attention at patch position (row, col)
- "rollout":     attention rollout up to and including `layer`, over every frame

Built in notebooks/08_attention_maps.ipynb.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from ..model import AttentionMaps
from .maps import Head, cls_space_map, joint_query_map, scheme_of, space_query_map, time_matrix
from .plots import ArrayLike, map_grid, overlay_figure, time_matrix_figure
from .rollout import attention_rollout

MODES = ("space-cls", "space-patch", "time", "rollout")


@dataclass(frozen=True)
class ExplorerState:
    """Everything one view depends on."""

    layer: int = 0
    head: Head = "mean"  # "mean", "max" or a head index
    frame: int = 0  # the query patch's frame (space-patch)
    row: int = 0  # the query patch (space-patch, time)
    col: int = 0
    mode: str = "space-cls"
    clip: int = 0  # which clip of the batch


def _first_probs(maps: AttentionMaps) -> Tensor:
    """The first layer's probabilities of the first step `maps` holds."""
    return next(getattr(maps, k)[0] for k in ("space", "time", "joint", "height", "sparse") if getattr(maps, k))


def num_heads(maps: AttentionMaps) -> int:
    """Heads per layer: every stored map has the layout (..., heads, L, L)."""
    return _first_probs(maps).shape[-3]


def available_modes(maps: AttentionMaps) -> tuple[str, ...]:
    """The modes `maps` can show: spatial modes need space or joint maps, "time" needs temporal ones."""
    spatial = bool(maps.space or maps.joint)
    return tuple(m for m in MODES if (m != "time" or maps.time) and (not m.startswith("space") or spatial))


def update_state(state: ExplorerState, change: Mapping[str, Any], maps: AttentionMaps) -> ExplorerState:
    """A new state with `change` ({field: value}) applied, checked against the depth, heads and grid of `maps`."""
    names = {f.name for f in fields(ExplorerState)}
    unknown = set(change) - names
    if unknown:
        raise ValueError(f"unknown explorer field(s) {sorted(unknown)}: use {sorted(names)}")
    new = replace(state, **change)
    T, h, w = maps.grid
    limits = {"layer": len(maps), "frame": T, "row": h, "col": w, "clip": _first_probs(maps).shape[0]}
    for name, n in limits.items():
        if not 0 <= getattr(new, name) < n:
            raise ValueError(f"{name}={getattr(new, name)} is out of range 0..{n - 1} for these maps")
    heads = num_heads(maps)
    if new.head not in ("mean", "max", *range(heads)):
        raise ValueError(f"head={new.head!r} is not 'mean', 'max' or a head index 0..{heads - 1}")
    if new.mode not in available_modes(maps):
        raise ValueError(f"mode={new.mode!r} is not available for {scheme_of(maps)} maps: use {available_modes(maps)}")
    return new


def _frames_figure(
    rel: Tensor,
    frames: ArrayLike | None,
    title: str,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    first: int = 0,
) -> Figure:
    """rel (T', h, w) for frames first.. over the frames when they are given, else as a row of heat maps."""
    labels = [f"t={first + t}" for t in range(len(rel))]
    if frames is None:
        return map_grid(rel[None], col_labels=labels, title=title)
    return overlay_figure(frames[first : first + len(rel)], rel, mean, std, title=title, labels=labels)


def render(
    state: ExplorerState,
    maps: AttentionMaps,
    frames: ArrayLike | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Figure:
    """The figure for one explorer state.

    Args:
        state: what to show (see `ExplorerState`).
        maps: from `model(video, return_attention=True)`.
        frames: the clip `state.clip` as (T, H, W, C) uint8 or normalised (T, C, H, W); None for bare maps.
        mean, std: the normalisation of float frames.
    """
    s = update_state(state, {}, maps)
    head = f"head {s.head}" if isinstance(s.head, int) else f"{s.head} of heads"
    if s.mode == "rollout":
        rel = attention_rollout(maps, s.head, num_layers=s.layer + 1)[s.clip]
        return _frames_figure(rel, frames, f"rollout of layers 0..{s.layer}, {head}", mean, std)
    if s.mode == "time":
        m = time_matrix(maps, s.layer, s.row, s.col, s.head)[s.clip]
        return time_matrix_figure(m, f"layer {s.layer}, {head}, patch ({s.row}, {s.col})")
    title = f"layer {s.layer}, {head}, " + (
        "class token" if s.mode == "space-cls" else f"query {s.frame, s.row, s.col}"
    )
    if s.mode == "space-cls":
        rel = cls_space_map(maps, s.layer, s.head) if maps.space else joint_query_map(maps, s.layer, None, s.head)
        return _frames_figure(rel[s.clip], frames, title, mean, std)
    if maps.joint:
        rel = joint_query_map(maps, s.layer, (s.frame, s.row, s.col), s.head)[s.clip]
        fig = _frames_figure(rel, frames, title, mean, std)
        ax = fig.axes[s.frame]
    else:
        rel = space_query_map(maps, s.layer, s.frame, s.row, s.col, s.head)[s.clip]
        fig = _frames_figure(rel[None], frames, title, mean, std, first=s.frame)
        ax = fig.axes[0]
    H, W = ax.images[-1].get_array().shape
    h, w = maps.grid[1:]
    corner = (s.col * W / w - 0.5, s.row * H / h - 0.5)  # pixel centres sit on integers
    ax.add_patch(Rectangle(corner, W / w, H / h, fill=False, color="cyan", linewidth=2))
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """A figure as PNG bytes (for `ipywidgets.Image`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


class AttentionExplorer:
    """Sliders, drop-downs and a clickable patch grid over `render`; display `.widget` in a notebook.

    Args:
        maps: from `model(video, return_attention=True)`.
        frames: the clip to draw on (see `render`); None for bare maps.
        mean, std: the normalisation of float frames.
        clip: which clip of the batch `frames` belongs to.
    """

    def __init__(
        self,
        maps: AttentionMaps,
        frames: ArrayLike | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        clip: int = 0,
    ) -> None:
        import ipywidgets as W

        self.maps, self.frames, self.mean, self.std = maps, frames, mean, std
        self._quiet = False  # set while `pick` moves two sliders, so that they redraw once, not twice
        self.state = update_state(
            ExplorerState(layer=len(maps) - 1, mode=available_modes(maps)[0]), {"clip": clip}, maps
        )
        T, h, w = maps.grid
        self.controls = {
            "mode": W.Dropdown(options=available_modes(maps), value=self.state.mode, description="mode"),
            "layer": W.IntSlider(value=self.state.layer, min=0, max=len(maps) - 1, description="layer"),
            "head": W.Dropdown(options=["mean", "max", *range(num_heads(maps))], value="mean", description="head"),
            "frame": W.IntSlider(value=0, min=0, max=T - 1, description="frame"),
            "row": W.IntSlider(value=0, min=0, max=h - 1, description="row"),
            "col": W.IntSlider(value=0, min=0, max=w - 1, description="col"),
        }
        for name, control in self.controls.items():
            control.observe(lambda change, name=name: self._on_control(name, change["new"]), names="value")
        buttons = []
        for i in range(h):
            for j in range(w):
                button = W.Button(
                    description="", tooltip=f"patch ({i}, {j})", layout=W.Layout(width="18px", height="18px")
                )
                button.on_click(lambda _, i=i, j=j: self.pick(i, j))
                buttons.append(button)
        self.patch_grid = W.GridBox(buttons, layout=W.Layout(grid_template_columns=f"repeat({w}, 20px)"))
        self.image = W.Image(format="png", value=figure_png(render(self.state, maps, frames, mean, std)))
        self.widget = W.HBox([W.VBox([*self.controls.values(), W.Label("query patch:"), self.patch_grid]), self.image])

    def set(self, **change: Any) -> None:
        """Apply a state change and redraw."""
        self.state = update_state(self.state, change, self.maps)
        self.image.value = figure_png(render(self.state, self.maps, self.frames, self.mean, self.std))

    def _on_control(self, name: str, value: Any) -> None:
        if not self._quiet:
            self.set(**{name: value})

    def pick(self, row: int, col: int) -> None:
        """A click on patch (row, col): move the row and column sliders there and redraw once."""
        self._quiet = True
        try:
            self.controls["row"].value, self.controls["col"].value = row, col
        finally:
            self._quiet = False
        self.set(row=row, col=col)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
