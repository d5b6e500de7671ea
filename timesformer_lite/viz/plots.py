"""Pictures of attention: heat-map grids, overlays on the input frames, the T x T time matrix, animations.

Every function returns a `matplotlib.figure.Figure` (or writes a file) and never calls `plt.show`, so they
work headless (Agg), in tests and in notebooks alike. One helper, `heatmap`, draws every map.

Frames come either decoded, `(T, H, W, C)` uint8, or as the model saw them, `(T, C, H, W)` float
normalised with `mean`/`std` (undone here). A `(T, h, w)` map is upsampled to the frame size
(`nearest` keeps the patches visible; `bilinear` smooths like the paper's figure).

Built in notebooks/08_attention_maps.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def _numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def heatmap(
    ax,
    data: ArrayLike,
    title: str | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
) -> AxesImage:
    """Draw one 2-D map on `ax` (no ticks, optional title) and return its image.

    Args:
        ax: a matplotlib Axes.
        data: (rows, cols) values.
        title: shown above the map.
        cmap: a matplotlib colormap name.
        vmin, vmax: colour range; the map's own range by default.
    """
    data = _numpy(data)
    if data.ndim != 2:
        raise ValueError(f"heatmap draws a 2-D map, got shape {data.shape}: select one frame / head first")
    image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)
    return image


def _width(width: float, title: str | None) -> float:
    """A figure width that also fits its title (about 0.08 inch per character at font size 10)."""
    return max(width, 0.08 * len(title or ""))


def map_grid(
    grid: ArrayLike,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cmap: str = "viridis",
    cell: float = 1.4,
) -> Figure:
    """A rows x cols panel of (h, w) maps sharing one colour scale, e.g. heads x frames or layers x frames.

    Args:
        grid: (rows, cols, h, w), e.g. `cls_space_map(maps, l, head=None)[0]` (heads, T, h, w).
        row_labels, col_labels: one label per row / column ("head 0", "t=3", ...).
        title: the figure title.
        cmap: a matplotlib colormap name.
        cell: inches per panel.
    """
    grid = _numpy(grid)
    if grid.ndim != 4:
        raise ValueError(f"map_grid needs (rows, cols, h, w), got shape {grid.shape}")
    rows, cols = grid.shape[:2]
    for name, labels, n in (("row_labels", row_labels, rows), ("col_labels", col_labels, cols)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} entries for {n} {name[:3]}s")
    fig = Figure(figsize=(_width(cell * cols, title), cell * rows + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    vmin, vmax = float(grid.min()), float(grid.max())
    for r in range(rows):
        for c in range(cols):
            heatmap(axes[r, c], grid[r, c], col_labels[c] if col_labels and r == 0 else None, cmap, vmin, vmax)
        if row_labels:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def frames_to_uint8(
    frames: ArrayLike, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> np.ndarray:
    """Frames as displayable (T, H, W, C) uint8.

    Args:
        frames: (T, H, W, C) uint8 as decoded, or (T, C, H, W) float as fed to the model.
        mean, std: the per-channel normalisation of float frames (undone); None for frames in [0, 1].
    """
    x = _numpy(frames)
    if x.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, C) uint8 or (T, C, H, W) float, got shape {x.shape}")
    if x.dtype == np.uint8:
        if x.shape[-1] not in (1, 3):
            raise ValueError(f"uint8 frames must be (T, H, W, C) with C 1 or 3, got shape {x.shape}")
        return x
    if x.shape[1] not in (1, 3):
        raise ValueError(f"float frames must be (T, C, H, W) with C 1 or 3, got shape {x.shape}")
    C = x.shape[1]
    m = np.asarray(mean if mean is not None else [0.0] * C, dtype=np.float64).reshape(1, C, 1, 1)
    s = np.asarray(std if std is not None else [1.0] * C, dtype=np.float64).reshape(1, C, 1, 1)
    x = np.clip(x * s + m, 0.0, 1.0)
    return np.round(x * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def upsample_map(relevance: ArrayLike, size: tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """(T, h, w) map -> (T, H, W) at frame size `size` = (H, W); `mode` is "nearest" or "bilinear"."""
    r = torch.as_tensor(_numpy(relevance), dtype=torch.float32)
    if r.dim() != 3:
        raise ValueError(f"a relevance map must be (T, h, w), got shape {tuple(r.shape)}: select one clip first")
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(r[:, None], size=size, mode=mode, **kw)[:, 0].numpy()


def _check_match(frames: np.ndarray, relevance: ArrayLike) -> None:
    if len(frames) != len(relevance):
        raise ValueError(f"{len(frames)} frames but a map of {len(relevance)} frames: pass the clip the map came from")


def blend(
    frames: ArrayLike,
    relevance: ArrayLike,
    alpha: float = 0.5,
    cmap: str = "inferno",
    mode: str = "nearest",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Frames with the coloured map mixed in, (T, H, W, 3) uint8; the colour scale is shared by all frames.

    Args:
        frames: see `frames_to_uint8`.
        relevance: (T, h, w), e.g. one clip of `attention_rollout(maps)`.
        alpha: weight of the colour (0: the frame, 1: only the map).
        cmap, mode: the colormap and the upsampling mode.
        mean, std: normalisation of float frames.
    """
    rgb = frames_to_uint8(frames, mean, std)
    _check_match(rgb, relevance)
    heat = upsample_map(relevance, rgb.shape[1:3], mode)
    heat = heat / max(float(heat.max()), 1e-12)
    colour = matplotlib.colormaps[cmap](heat)[..., :3] * 255  # (T, H, W, 3)
    rgb = np.repeat(rgb, 3, axis=-1) if rgb.shape[-1] == 1 else rgb
    return np.round((1 - alpha) * rgb + alpha * colour).astype(np.uint8)


def overlay_figure(
    frames: ArrayLike,
    relevance: ArrayLike,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    alpha: float = 0.5,
    cmap: str = "inferno",
    mode: str = "nearest",
    title: str | None = None,
    labels: Sequence[str] | None = None,
    cell: float = 2.0,
) -> Figure:
    """One panel per frame: the frame (`ax.images[0]`) under its upsampled map (`ax.images[1]`, shared scale).

    Args:
        frames: (T, H, W, C) uint8 or (T, C, H, W) normalised float.
        relevance: (T, h, w).
        mean, std: normalisation of float frames.
        alpha: opacity of the map.
        cmap, mode: the colormap and the upsampling mode.
        title: the figure title.
        labels: one title per panel; "t=0", "t=1", ... by default.
        cell: inches per panel.
    """
    rgb = frames_to_uint8(frames, mean, std)
    _check_match(rgb, relevance)
    heat = upsample_map(relevance, rgb.shape[1:3], mode)
    T = len(rgb)
    labels = labels if labels is not None else [f"t={t}" for t in range(T)]
    if len(labels) != T:
        raise ValueError(f"labels has {len(labels)} entries for {T} frames")
    fig = Figure(figsize=(_width(cell * T, title), cell + (0.4 if title else 0.2)), layout="constrained")
    axes = fig.subplots(1, T, squeeze=False)[0]
    for t, ax in enumerate(axes):
        ax.imshow(rgb[t, ..., 0] if rgb.shape[-1] == 1 else rgb[t], cmap="gray")
        heatmap(ax, heat[t], labels[t], cmap, 0.0, float(heat.max()))
        ax.images[1].set_alpha(alpha)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def time_matrix_figure(matrix: ArrayLike, title: str | None = None, cmap: str = "viridis") -> Figure:
    """The T x T temporal attention of one patch position: query frame (rows) x key frame (columns).

    Args:
        matrix: (T, T), e.g. `time_matrix(maps, l, row, col)[0]`.
        title: the axes title.
        cmap: a matplotlib colormap name.
    """
    m = _numpy(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"a time matrix is (T, T), got shape {m.shape}: select one clip and one head")
    fig = Figure(figsize=(3.2, 2.8), layout="constrained")
    ax = fig.subplots()
    image = heatmap(ax, m, title, cmap, 0.0, 1.0)
    T = m.shape[0]
    ax.set_xticks(range(T))
    ax.set_yticks(range(T))
    ax.set_xlabel("key frame")
    ax.set_ylabel("query frame")
    fig.colorbar(image, ax=ax)
    return fig


def confusion_figure(confusion: ArrayLike, classes: Sequence[str], title: str | None = None) -> Figure:
    """A confusion matrix as row-normalised percentages (row = true class), counts written in the cells.

    Args:
        confusion: (K, K) counts, row = true class, column = predicted (see `train.metrics.confusion_matrix`).
        classes: the K class names.
        title: the axes title; defaults to the overall accuracy.
    """
    counts = _numpy(confusion).astype(np.int64)
    K = counts.shape[0]
    if counts.shape != (K, K) or len(classes) != K:
        raise ValueError(f"confusion is {counts.shape} for {len(classes)} classes: expected ({K}, {K}) and {K} names")
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    size = min(1.5 + 0.55 * K, 14.0)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    image = heatmap(ax, share, title or f"accuracy {accuracy:.1%} on {counts.sum()} videos", "Blues", 0.0, 1.0)
    ax.set_xticks(range(K), list(classes), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(K), list(classes), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if K <= 30:
        for i in range(K):
            for j in range(K):
                if counts[i, j]:
                    colour = "white" if share[i, j] > 0.6 else "black"
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=6, color=colour)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return fig


def write_animation(
    path: str | Path,
    frames: ArrayLike,
    relevance: ArrayLike,
    fps: float = 4.0,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    alpha: float = 0.5,
    cmap: str = "inferno",
    mode: str = "nearest",
) -> Path:
    """Write the overlay over time as a GIF (Pillow) or an MP4 (PyAV, H.264), chosen by the suffix of `path`.

    A GIF merges identical consecutive frames (playback time is kept); an MP4 keeps every frame.

    Args:
        path: where to write, ending in .gif or .mp4.
        frames, relevance, mean, std, alpha, cmap, mode: as for `blend`.
        fps: frames per second.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"cannot write {path.name!r}: the animation path must end in .gif or .mp4")
    video = blend(frames, relevance, alpha, cmap, mode, mean, std)  # (T, H, W, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in video]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
        return path
    import av

    H, W = video.shape[1:3]
    video = np.pad(video, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")  # yuv420p needs even sizes
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        for f in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path
