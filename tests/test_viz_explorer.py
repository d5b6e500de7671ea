"""Explorer: pure state updates and rendering, and the widget wiring, all without a browser."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import timesformer_lite as tl
from timesformer_lite.viz import attention_rollout, cls_space_map, time_matrix
from timesformer_lite.viz.explorer import (
    AttentionExplorer,
    ExplorerState,
    available_modes,
    figure_png,
    render,
    update_state,
)
from timesformer_lite.viz.plots import upsample_map

MEAN, STD = [0.5] * 3, [0.25] * 3


def clip_and_maps(attention_type: str = "divided_space_time"):
    torch.manual_seed(0)
    model = tl.TimeSformer(
        img_size=32, patch_size=8, num_frames=3, embed_dim=16, depth=2, num_heads=2, attention_type=attention_type
    )
    model.eval()
    for p in model.parameters():  # a random model with sharp, layer-specific attention
        torch.nn.init.normal_(p, std=0.5)
    video = torch.randn(2, 3, 3, 16, 24)
    with torch.no_grad():
        _, maps = model(video, return_attention=True)
    return video, maps


def test_update_state_applies_a_change_and_rejects_what_the_maps_cannot_show():
    _, maps = clip_and_maps()
    state = update_state(ExplorerState(), {"layer": 1, "row": 1, "col": 2, "head": 1}, maps)
    assert (state.layer, state.row, state.col, state.head) == (1, 1, 2, 1)
    with pytest.raises(ValueError, match=r"row=2 is out of range 0..1"):
        update_state(state, {"row": 2}, maps)
    with pytest.raises(ValueError, match=r"head=2 is not 'mean', 'max' or a head index 0..1"):
        update_state(state, {"head": 2}, maps)
    with pytest.raises(ValueError, match=r"unknown explorer field\(s\) \['depth'\]"):
        update_state(state, {"depth": 1}, maps)
    _, joint = clip_and_maps("joint_space_time")
    assert available_modes(joint) == ("space-cls", "space-patch", "rollout")
    with pytest.raises(ValueError, match="mode='time' is not available for joint_space_time maps"):
        update_state(ExplorerState(), {"mode": "time"}, joint)


def test_changing_the_layer_changes_the_rendered_image():
    video, maps = clip_and_maps()
    state = ExplorerState(layer=0, clip=1)
    images = []
    for layer in (0, 1):
        fig = render(update_state(state, {"layer": layer}, maps), maps, video[1], MEAN, STD)
        expected = upsample_map(cls_space_map(maps, layer)[1], (16, 24))
        np.testing.assert_allclose(fig.axes[2].images[1].get_array(), expected[2], rtol=1e-6)
        images.append(np.asarray(Image.open(io.BytesIO(figure_png(fig)))))
    assert images[0].shape == images[1].shape and not np.array_equal(images[0], images[1])


def test_each_mode_renders_the_matching_map():
    video, maps = clip_and_maps()
    rollout = render(ExplorerState(layer=0, mode="rollout", head="max"), maps, video[0], MEAN, STD)
    expected = upsample_map(attention_rollout(maps, "max", num_layers=1)[0], (16, 24))
    np.testing.assert_allclose(rollout.axes[1].images[1].get_array(), expected[1], rtol=1e-6)
    time = render(ExplorerState(layer=1, mode="time", row=1, col=2, head=0), maps)
    np.testing.assert_allclose(time.axes[0].images[0].get_array(), time_matrix(maps, 1, 1, 2, 0)[0].numpy())
    patch = render(ExplorerState(mode="space-patch", frame=2, row=1, col=2), maps, video[0], MEAN, STD)
    assert len(patch.axes) == 1 and patch.axes[0].get_title() == "t=2"  # the query's own frame
    box = patch.axes[0].patches[0]
    assert (box.get_x(), box.get_y(), box.get_width()) == (15.5, 7.5, 8.0)  # patch (1, 2) of an 8-px grid
    bare = render(ExplorerState(mode="space-cls"), maps)
    assert len(bare.axes) == 3 and bare.axes[0].images[0].get_array().shape == (2, 3)


def test_joint_space_patch_mode_shows_the_query_over_the_whole_clip():
    video, maps = clip_and_maps("joint_space_time")
    fig = render(ExplorerState(mode="space-patch", frame=1, row=0, col=1), maps, video[0], MEAN, STD)
    assert len(fig.axes) == 3 and len(fig.axes[1].patches) == 1 and not fig.axes[0].patches


def test_widget_redraws_on_slider_and_patch_click():
    video, maps = clip_and_maps()
    explorer = AttentionExplorer(maps, video[0], MEAN, STD)
    assert explorer.state.layer == 1 and explorer.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    before = explorer.image.value
    explorer.controls["layer"].value = 0
    assert explorer.state.layer == 0 and explorer.image.value != before
    explorer.controls["mode"].value = "time"
    explorer.patch_grid.children[1 * 3 + 2].click()  # row 1, column 2 of a 2x3 grid
    assert (explorer.state.row, explorer.state.col) == (1, 2)
    assert (explorer.controls["row"].value, explorer.controls["col"].value) == (1, 2)
    expected = figure_png(render(explorer.state, maps, video[0], MEAN, STD))
    assert explorer.image.value == expected
