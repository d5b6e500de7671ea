"""The papermill main job (`notebooks/90_full_training.ipynb`, what `make run` executes).

Kernel: papermill starts the kernel named `python3`. Which interpreter that is depends on the kernelspecs Jupyter
finds (the user's ~/.local/share/jupyter may hold a `python3` of another environment). To test this repository's
environment and nothing else, each papermill call gets a temporary JUPYTER_PATH, searched before every other
kernel folder, holding a `python3` kernelspec written by `ipykernel install --prefix` whose argv names this
interpreter (sys.executable) by absolute path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import timesformer_lite as tl

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "90_full_training.ipynb"


@pytest.fixture(scope="module")
def jupyter_env(tmp_path_factory) -> dict[str, str]:
    prefix = tmp_path_factory.mktemp("kernel")
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3"],
        check=True,
        capture_output=True,
    )
    return {**os.environ, "JUPYTER_PATH": str(prefix / "share" / "jupyter"), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def papermill(args: list[str], env: dict[str, str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOK), *args, "-k", "python3", "--no-progress-bar"]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def test_the_python3_kernel_papermill_starts_is_this_interpreter(jupyter_env):
    code = "from jupyter_client.kernelspec import KernelSpecManager as K; print(K().get_kernel_spec('python3').argv[0])"
    out = subprocess.run([sys.executable, "-c", code], env=jupyter_env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == sys.executable


def test_the_parameters_cell_declares_the_documented_parameters():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    values: dict = {}
    exec(cell.source, values)
    assert {k: values[k] for k in ("preset", "overrides", "data_root", "nproc", "out_dir", "seed", "device")} == {
        "preset": "toy",
        "overrides": [],
        "data_root": None,
        "nproc": 1,
        "out_dir": "runs",
        "seed": None,
        "device": None,
    }


def test_papermill_help_lists_every_parameter():
    cmd = [sys.executable, "-m", "papermill", "--help-notebook", str(NOTEBOOK)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    listed = re.findall(r"^  (\w+): ", out, re.M)  # "  name: type (default ...)  help"
    assert listed == ["preset", "overrides", "data_root", "nproc", "out_dir", "seed", "device"], out


@pytest.mark.parametrize("preset", ["smoke", "toy", "ucf101", "k400"])
def test_prepare_only_injects_parameters_that_resolve_to_the_preset(preset, jupyter_env, tmp_path):
    out = tmp_path / "prepared.ipynb"
    result = papermill(
        [str(out), "--prepare-only", "-p", "preset", preset, "-p", "nproc", "8", "-y", "overrides: [train.epochs=3]"],
        jupyter_env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cells = nbformat.read(out, as_version=4).cells
    tags = [c.metadata.get("tags", []) for c in cells]
    at = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[at + 1]  # right after the defaults, so the overrides win
    assert all(not c.get("outputs") for c in cells if c.cell_type == "code")  # nothing was executed
    values: dict = {}
    exec(cells[at].source + "\n" + cells[at + 1].source, values)
    assert (values["preset"], values["nproc"], values["overrides"]) == (preset, 8, ["train.epochs=3"])
    cfg = tl.load_config(values["preset"], [*values["overrides"], f"train.out_dir={values['out_dir']}"])
    assert cfg.train.name == preset and cfg.train.epochs == 3 and cfg.train.out_dir == "runs"


@pytest.mark.slow
def test_a_smoke_run_trains_tests_and_leaves_a_summary(jupyter_env, tmp_path):
    out = tmp_path / "executed.ipynb"
    result = papermill([str(out), "-p", "preset", "smoke", "--cwd", str(tmp_path)], jupyter_env, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "runs" / "smoke" / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["world_size"] == 1
    assert 0.0 <= summary["test_top1"] <= summary["test_top5"] <= 1.0 and summary["test_within_pair"] is not None
    assert (tmp_path / "runs" / "smoke" / "best.pt").is_file() and (tmp_path / "data" / "toy_smoke").is_dir()
    nb = nbformat.read(out, as_version=4)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "".join(o.get("text", "") for o in last.outputs) == "notebook 90: 4/4 checks passed\n"
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images == 3  # learning curves, confusion matrix, rollout overlay


@pytest.mark.slow
def test_nproc_2_launches_torchrun_and_streams_its_log(jupyter_env, tmp_path):
    out = tmp_path / "executed.ipynb"
    result = papermill(
        [str(out), "-p", "preset", "smoke", "-p", "nproc", "2", "--cwd", str(tmp_path)], jupyter_env, tmp_path
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "runs" / "smoke" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_in_sync"] is True
    nb = nbformat.read(out, as_version=4)
    streamed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "torch.distributed.run --nproc_per_node=2" in streamed and "epoch  1/1" in streamed
