"""`filecheck.check_complete`: what a download without a published digest must be before it is kept.

Every format the zoo serves, written by its own library: the whole file passes; the same bytes cut anywhere, an
HTML page or a JSON error under its name, a flipped byte inside a zip member, or another format under its name
do not, each with a reason that says what the bytes are.
"""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from timesformer_lite.weights.filecheck import NotThatFile, check_complete


def torch_zip(path: Path) -> None:
    torch.save({"model_state": {"w": torch.randn(64, 8)}}, path)


def torch_legacy(path: Path) -> None:
    torch.save({"w": torch.randn(64, 8)}, path, _use_new_zipfile_serialization=False)


def safetensors(path: Path) -> None:
    save_file({"w": torch.randn(64, 8), "b": torch.randn(3)}, str(path), metadata={"format": "pt"})


def pdparams(protocol: int):
    def write(path: Path) -> None:  # what paddle.save writes: one pickle of a dict of numpy arrays
        state = {"backbone.w": np.ones((64, 8), np.float32), "StructuredToParameterName@@": {"w": "linear_0.w_0"}}
        path.write_bytes(pickle.dumps(state, protocol=protocol))

    return write


def npz(path: Path) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a name without it
        np.savez(f, **{"embedding/kernel": np.ones((4, 4, 3, 8), np.float32)})


FORMATS = {
    "x.pyth": torch_zip,
    "x.pth": torch_legacy,
    "x.safetensors": safetensors,
    "x.pdparams": pdparams(4),
    "y.pdparams": pdparams(2),
    "x.npz": npz,
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_complete_file_passes_and_the_same_bytes_cut_short_do_not(tmp_path, name):
    path = tmp_path / name
    FORMATS[name](path)
    check_complete(path, name)
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 20, 1):
        path.write_bytes(data[:cut])
        with pytest.raises(NotThatFile):
            check_complete(path, name)


@pytest.mark.parametrize("name", [*FORMATS, "x.unknown"])
def test_an_html_page_is_named_as_one(tmp_path, name):
    page = tmp_path / "page"
    page.write_bytes(b"\n<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>...</body></html>")
    with pytest.raises(NotThatFile, match=r"^an HTML page \(a login, error or consent page\?\)$"):
        check_complete(page, name)


def test_what_the_bytes_are_is_said(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b'{"error": "rate limited"}')
    with pytest.raises(NotThatFile, match=r"^a JSON document \(an error message from the server\?\)$"):
        check_complete(path, "x.safetensors")
    path.write_bytes(b"")
    with pytest.raises(NotThatFile, match="^an empty file$"):
        check_complete(path, "x.pyth")
    npz(path)
    with pytest.raises(NotThatFile, match=r"^not a torch file \(neither a zip holding data.pkl"):
        check_complete(path, "x.pyth")  # an .npz is a zip too, but not a torch file
    torch_zip(path)
    with pytest.raises(NotThatFile, match=r"^not an \.npz \(a zip of \.npy arrays\)"):
        check_complete(path, "x.npz")
    with pytest.raises(NotThatFile, match="^not a pickle"):
        check_complete(path, "x.pdparams")
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside a member: the zip's directory still parses, its CRC does not
    path.write_bytes(bytes(data))
    with pytest.raises(NotThatFile, match=r"^a damaged zip archive \(member '.*' fails its CRC check\)$"):
        check_complete(path, "x.pyth")


def test_trailing_bytes_after_a_pickle_or_safetensors_are_refused(tmp_path):
    path = tmp_path / "f"
    pdparams(4)(path)
    path.write_bytes(path.read_bytes() + b"<html>")
    with pytest.raises(NotThatFile, match=r"^a pickle of \d+ bytes followed by 6 more: not one \.pdparams$"):
        check_complete(path, "x.pdparams")
    safetensors(path)
    path.write_bytes(path.read_bytes() + b"\0" * 4)
    with pytest.raises(NotThatFile, match="whose tensors do not end at its last byte"):
        check_complete(path, "x.safetensors")
