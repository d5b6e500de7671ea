"""PaddleVideo .pdparams: read without paddle, Linear weights transposed back, logits of the source model.

The files are written the way `paddle.save(layer.state_dict(), path)` writes them (checked against
paddlepaddle 3.3.1): a plain dict of numpy arrays plus the "StructuredToParameterName@@" bookkeeping
dict, pickled with protocol 4 (protocol 2 for old `save_dygraph` files), Linear weights as (in, out).
"""

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import timesformer_lite as tl
from timesformer_lite.weights import WeightsError, detect, load_pretrained

TINY = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2, num_classes=6)


def source_model(seed: int = 0, **values) -> tl.TimeSformer:
    torch.manual_seed(seed)
    model = tl.TimeSformer(tl.ModelConfig(**{**TINY, "drop_path_rate": 0.0, **values})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def paddle_state(model: tl.TimeSformer, video: bool = True) -> dict:
    """Our state dict as PaddleVideo's Recognizer (backbone. / head.fc.) or a PaddleClas ViT names it."""
    out, names = {}, {}
    for i, (k, v) in enumerate(model.state_dict().items()):
        a = v.numpy().copy()
        is_linear = k.endswith(".weight") and a.ndim == 2
        a = a.T.copy() if is_linear else a  # paddle.nn.Linear stores (in, out)
        name = k.replace("head.", "head.fc.", 1) if k.startswith("head.") else "backbone." + k
        name = name if video else k
        out[name] = a
        names[name] = f"{'linear' if is_linear else 'param'}_{i}.w_0"
    out["StructuredToParameterName@@"] = names
    return out


@pytest.mark.parametrize("protocol", [4, 2])
def test_pdparams_gives_the_logits_of_the_model_it_came_from(tmp_path, protocol):
    model = source_model()
    path = tmp_path / "TimeSformer_k400.pdparams"
    with open(path, "wb") as f:
        pickle.dump(paddle_state(model), f, protocol=protocol)
    assert detect(path) == "paddle"
    loaded = load_pretrained(path, num_heads=2)
    assert loaded.load_report.ok and loaded.cfg.attention_type == "divided_space_time"
    assert loaded.cfg.num_classes == 6 and loaded.cfg.num_frames == 4 and loaded.cfg.layer_norm_eps == 1e-6
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(video), model(video))


def test_paddleclas_vit_pdparams_is_inflated(tmp_path):
    vit = source_model(1, attention_type="space_only", num_frames=1)  # space_only with one frame: a plain ViT
    with open(tmp_path / "ViT_base_patch16_224_pretrained.pdparams", "wb") as f:
        pickle.dump(paddle_state(vit, video=False), f, protocol=4)
    model = load_pretrained(tmp_path / "ViT_base_patch16_224_pretrained.pdparams", num_heads=2, keep_vit_head=True)
    assert model.cfg.attention_type == "divided_space_time" and model.load_report.ok
    assert model.load_report.keys["blocks.1.temporal_norm1.bias"] == "inflated: copy of blocks.1.norm1.bias"
    images = torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        assert (model(images.expand(2, 8, 3, 32, 32)) - vit(images)).abs().max().item() <= 1e-5


def test_pdparams_that_is_not_arrays_is_refused(tmp_path):
    with open(tmp_path / "odd.pdparams", "wb") as f:
        pickle.dump({"backbone.pos_embed": [1.0, 2.0]}, f, protocol=4)
    with pytest.raises(WeightsError, match=r"backbone\.pos_embed \(list\)"):
        load_pretrained(tmp_path / "odd.pdparams")


class RunsCode:
    """Unpickling this runs a shell command (the classic malicious-pickle payload)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pdparams_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"backbone.cls_token": np.zeros((1, 1, 4), np.float32), "x": RunsCode(marker)}, f, protocol=4)
    refused = (
        rf"refusing to load '{path}': it names the Python global '(posix|os|nt)\.system', and unpickling it could run"
    )
    with pytest.raises(WeightsError, match=refused):
        load_pretrained(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["evil.pth", "evil.pyth", "evil_raw.pth"])
def test_malicious_torch_pickle_is_refused_and_nothing_runs(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    payload = {"model_state": {"model.cls_token": torch.zeros(1, 1, 4), "x": RunsCode(marker)}}
    if name.startswith("evil_raw"):  # the legacy format: a bare pickle stream
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, path)
    with pytest.raises(
        WeightsError, match=rf"refusing to load '{path}': it names the Python global '(posix|os|nt)\.sys"
    ):
        load_pretrained(path)
    assert not marker.exists()


def test_real_paddle_save_is_read(tmp_path):
    """Optional: needs paddlepaddle (not a project dependency); writes a file with paddle itself."""
    paddle = pytest.importorskip("paddle", reason="paddlepaddle is not installed; the paddle.save check is optional")
    layer = paddle.nn.Linear(4, 3)
    paddle.save(layer.state_dict(), str(tmp_path / "linear.pdparams"))
    from timesformer_lite.weights.paddle import read_pdparams

    arrays = read_pdparams(tmp_path / "linear.pdparams")
    assert np.array_equal(arrays["weight"], layer.weight.numpy()) and arrays["weight"].shape == (4, 3)
    assert "StructuredToParameterName@@" in arrays


def _in_other_formats(root, model):
    """`model`'s state dict as a torch file (zip and legacy), a safetensors file and an .npz."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, root / "zip.bin")
    torch.save(state, root / "legacy.bin", _use_new_zipfile_serialization=False)
    save_file(state, root / "st.bin")
    np.savez(root / "arrays.npz", **{k: v.numpy() for k, v in state.items()})
    return {"torch": root / "zip.bin", "torch (legacy)": root / "legacy.bin", "safetensors": root / "st.bin",
            "npz": root / "arrays.npz"}  # fmt: skip


@pytest.mark.parametrize("suffix", [".pdparams", ".npz", ".safetensors"])
def test_a_file_named_for_another_format_says_what_it_is_and_how_to_rename_it(tmp_path, suffix):
    files = _in_other_formats(tmp_path, source_model())
    promised = {".pdparams": "PaddleVideo's format", ".npz": "a .npz of arrays", ".safetensors": "a .safetensors file"}
    for kind, real in files.items():
        kind = kind.split()[0]
        rename = {"torch": ".pt", "safetensors": ".safetensors", "npz": ".npz"}[kind]
        if rename == suffix:  # the right name
            continue
        named = tmp_path / f"{real.stem}-as{suffix}"
        named.write_bytes(real.read_bytes())
        with pytest.raises(WeightsError) as e:
            load_pretrained(named)
        said = {"torch": "a torch file", "safetensors": promised[".safetensors"], "npz": promised[".npz"]}[kind]
        assert str(e.value) == f"'{named}' is {said}, not {promised[suffix]}: rename it to {rename}"
        if kind == "torch":  # renamed as told, it loads
            assert load_pretrained(named.rename(named.with_suffix(".pt"))).load_report.ok


def test_a_torch_file_named_pdparams_is_one_line_from_the_cli(tmp_path):
    from safety_fixtures import cli, one_line_error  # it imports this module's models: not at the top

    path = tmp_path / "TimeSformer_k400.pdparams"
    torch.save(source_model().state_dict(), path)
    done = cli("convert", str(path), str(tmp_path / "out.safetensors"))
    assert done.returncode == 2
    line = one_line_error(done.stderr)  # was "holds a int"
    assert line.endswith(f"'{path}' is a torch file, not PaddleVideo's format: rename it to .pt")
