"""Plots: figure contents (axes, image arrays), frame handling, and animations that decode to T frames."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from PIL import Image

from timesformer_lite.viz.plots import (
    blend,
    frames_to_uint8,
    map_grid,
    overlay_figure,
    time_matrix_figure,
    upsample_map,
    write_animation,
)


def test_map_grid_has_one_axes_per_cell_with_that_cells_map():
    grid = torch.rand(3, 4, 2, 5)  # heads x frames of 2x5 maps
    fig = map_grid(grid, row_labels=[f"head {i}" for i in range(3)], col_labels=[f"t={t}" for t in range(4)])
    assert len(fig.axes) == 12
    ax = fig.axes[1 * 4 + 2]  # row 1, column 2
    np.testing.assert_allclose(ax.images[0].get_array(), grid[1, 2].numpy())
    assert ax.images[0].get_clim() == pytest.approx((grid.min().item(), grid.max().item()))  # one shared scale
    assert fig.axes[4].get_ylabel() == "head 1" and fig.axes[2].get_title() == "t=2"


def test_float_frames_are_unnormalised_to_uint8_hwc():
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    rgb = np.random.default_rng(0).integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    normalised = (torch.from_numpy(rgb).permute(0, 3, 1, 2) / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(
        std
    )[:, None, None]
    np.testing.assert_array_equal(frames_to_uint8(normalised, mean, std), rgb)
    assert frames_to_uint8(rgb) is rgb
    with pytest.raises(ValueError, match=r"float frames must be \(T, C, H, W\)"):
        frames_to_uint8(rgb.astype(np.float32))


def test_nearest_upsampling_repeats_each_patch_over_its_pixels():
    rel = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(2, 2, 3)
    up = upsample_map(rel, (4, 6))
    assert up.shape == (2, 4, 6)
    np.testing.assert_array_equal(up[1], np.kron(rel[1].numpy(), np.ones((2, 2))))


def test_overlay_shows_each_frame_under_its_upsampled_map():
    frames = np.random.default_rng(1).integers(0, 256, (3, 16, 24, 3), dtype=np.uint8)
    rel = torch.rand(3, 2, 3)
    fig = overlay_figure(frames, rel, alpha=0.4)
    assert len(fig.axes) == 3
    ax = fig.axes[2]
    np.testing.assert_array_equal(ax.images[0].get_array(), frames[2])
    heat = ax.images[1].get_array()
    assert heat.shape == (16, 24)
    np.testing.assert_allclose(heat[8:, 16:], rel[2, 1, 2].item())  # patch (1, 2) covers rows 8.., cols 16..
    assert ax.images[1].get_alpha() == 0.4 and ax.images[1].get_clim() == (0.0, pytest.approx(rel.max().item()))
    assert [ax.get_title() for ax in fig.axes] == ["t=0", "t=1", "t=2"]
    assert overlay_figure(frames, rel, labels=["a", "b", "c"]).axes[1].get_title() == "b"
    with pytest.raises(ValueError, match="3 frames but a map of 2 frames"):
        overlay_figure(frames, rel[:2])


def test_blend_mixes_the_colour_of_the_peak_into_its_patch_only():
    frames = np.full((2, 8, 8, 3), 100, dtype=np.uint8)
    rel = torch.zeros(2, 2, 2)
    rel[1, 0, 1] = 1.0
    out = blend(frames, rel, alpha=1.0, cmap="gray")
    assert out.shape == (2, 8, 8, 3)
    assert (out[1, :4, 4:] == 255).all() and (out[1, 4:] == 0).all() and (out[0] == 0).all()
    np.testing.assert_array_equal(blend(frames, rel, alpha=0.0), frames)


def test_time_matrix_figure_draws_the_matrix_with_frame_ticks():
    m = torch.softmax(torch.randn(4, 4), dim=-1)
    fig = time_matrix_figure(m, title="patch (1, 2)")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), m.numpy())
    assert list(ax.get_xticks()) == [0, 1, 2, 3] and ax.get_ylabel() == "query frame"
    assert len(fig.axes) == 2  # the map and its colour bar


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_animation_is_written_and_decodes_to_t_frames(tmp_path, suffix):
    T = 5
    frames = torch.rand(T, 3, 15, 21)  # float (T, C, H, W) in [0, 1]; odd sizes are padded for H.264
    rel = torch.rand(T, 3, 3)
    path = write_animation(tmp_path / f"clip{suffix}", frames, rel, fps=5)
    assert path.stat().st_size > 0
    if suffix == ".gif":
        with Image.open(path) as im:
            assert im.n_frames == T and im.size == (21, 15)
    else:
        with av.open(str(path)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(decoded) == T and decoded[0].shape == (16, 22, 3)
    with pytest.raises(ValueError, match="must end in .gif or .mp4"):
        write_animation(tmp_path / "clip.avi", frames, rel)


def test_confusion_figure_shows_row_normalised_shares_and_counts():
    from timesformer_lite.viz import confusion_figure

    counts = torch.tensor([[3, 1], [0, 4]])
    fig = confusion_figure(counts, ["left", "right"])
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.75, 0.25], [0.0, 1.0]])
    assert sorted(t.get_text() for t in ax.texts) == ["1", "3", "4"]
    assert "87.5%" in ax.get_title()
    with pytest.raises(ValueError, match="2 names"):
        confusion_figure(counts, ["only one"])
