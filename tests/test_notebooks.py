"""The course notebooks run top to bottom under nbval with the smoke preset, and their checked outputs match.

How it works:
- Every lesson notebook (`notebooks/0N_*.ipynb`) is one test. It runs `pytest --nbval-lax` in a subprocess on a
  copy of `notebooks/` in a temporary folder, so the data and runs the notebooks write (they work from the
  folder above `notebooks/`, as the command line does from the repository root) never land in the repository.
- `--nbval-lax` executes every cell and compares outputs only for cells marked `# NBVAL_CHECK_OUTPUT`: each
  notebook's final Check cell (asserts, then one line such as `notebook 03: 6/6 checks passed`) and the few
  cells whose printed numbers matter. A cell's stored output is only compared if the committed cell was
  executed, so `test_notebooks_clean.py` requires those outputs to be committed; without them nbval would
  pass trivially.
- `--nbval-current-env` starts the kernel with this interpreter (the .venv's python), whatever kernels the
  user's Jupyter knows about; `notebooks/nbval_sanitize.cfg` masks addresses, durations, temp paths.
- The papermill main job (`90_full_training.ipynb`, whose default preset trains for minutes) is tested by
  `test_notebooks_papermill.py` with `-p preset smoke` instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
LESSONS = sorted(NB_DIR.glob("[0-8][0-9]*_*.ipynb"))  # 00_ ... 10_ (06b_ between 06 and 07); not 90_
SANITIZE = NB_DIR / "nbval_sanitize.cfg"
CELL_TIMEOUT_S = 120  # the slowest smoke cell takes a few seconds; a hang fails fast instead of after 2000 s


def nbval(paths: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    """`pytest --nbval-lax` on notebooks, in a fresh interpreter, with no config inherited from this repo."""
    cmd = [
        sys.executable, "-m", "pytest", *map(str, paths),
        "--nbval-lax", "--nbval-current-env", f"--nbval-sanitize-with={SANITIZE}",
        f"--nbval-cell-timeout={CELL_TIMEOUT_S}", "-p", "no:cacheprovider", "-q", f"--rootdir={cwd}",
    ]  # fmt: skip
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1", "TQDM_DISABLE": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def code_cells(path: Path) -> int:
    return sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A scratch copy of notebooks/ (and of benchmarks/, whose table1.py notebook 06b runs) inside an otherwise
    empty folder (the notebooks' working root)."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(NB_DIR, root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(NB_DIR.parent / "benchmarks", root / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    return root / "notebooks"


def test_the_course_has_its_lessons():
    numbers = [p.name.split("_")[0] for p in LESSONS]
    assert {"00", "01", "02", "03", "04", "05", "06", "06b", "07", "08", "09", "10"} <= set(numbers), numbers


@pytest.mark.slow
@pytest.mark.parametrize("notebook", LESSONS, ids=[p.stem for p in LESSONS])
def test_notebook_runs_and_its_checked_outputs_match(course: Path, notebook: Path):
    result = nbval([course / notebook.name], course.parent)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) == code_cells(notebook), result.stdout[-2000:]  # every cell ran


def _notebook(path: Path, printed: str, stored: str) -> None:
    """A one-cell notebook whose checked cell prints `printed` but has `stored` committed as its output."""
    cell = nbformat.v4.new_code_cell(f"# NBVAL_CHECK_OUTPUT\nprint({printed!r})", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored + "\n")]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell("print('unchecked', id(object()))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_harness_fails_on_a_changed_checked_output_and_sanitizes_durations_and_addresses(tmp_path: Path):
    _notebook(tmp_path / "same.ipynb", "took 0.52 s at 0x7f3a2c", "took 12 ms at 0xdeadbeef")
    _notebook(tmp_path / "changed.ipynb", "notebook 03: 5/6 checks passed", "notebook 03: 6/6 checks passed")
    result = nbval([tmp_path / "same.ipynb", tmp_path / "changed.ipynb"], tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert re.search(r"1 failed, 3 passed", result.stdout), result.stdout[-3000:]
    assert "changed.ipynb::Cell 0" in result.stdout and "5/6 checks passed" in result.stdout
