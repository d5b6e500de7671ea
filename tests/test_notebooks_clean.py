"""The notebooks are committed clean: the checked outputs and nothing else, one kernelspec, intact parameters.

nbval only compares a stored output when the committed cell was executed, so a notebook stripped of its
Check output would pass trivially; these static checks make sure that cannot happen, and that the notebooks
stay small, diff-friendly and runnable by papermill.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]*_*.ipynb"))  # 06b_ sits between 06_ and 07_
LESSONS = [p for p in NOTEBOOKS if not p.name.startswith("9")]  # run by nbval (test_notebooks.py); 90_ by papermill
MAX_BYTES = 64_000
CHECK_LINE = re.compile(r"notebook (\d\d[a-z]?): (\d+)/(\d+) checks passed\n")


def read(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def checked(cell) -> bool:
    return cell.cell_type == "code" and "# NBVAL_CHECK_OUTPUT" in cell.source


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


ids = [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_metadata_is_only_the_python3_kernelspec(path: Path):
    nb = read(path)
    assert nb.metadata.kernelspec.name == "python3" and nb.metadata.kernelspec.language == "python"
    assert set(nb.metadata) <= {"kernelspec", "language_info"}, sorted(nb.metadata)  # no papermill, widgets
    for cell in nb.cells:
        assert set(cell.metadata) <= {"tags"}, (cell.id, sorted(cell.metadata))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_the_first_code_cell_is_the_only_parameters_cell_and_holds_the_preset(path: Path):
    nb = read(path)
    code = [c for c in nb.cells if c.cell_type == "code" and c.id != "colab-install"]  # docs/book/colab_cells.py
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert tagged == code[:1], "exactly one cell tagged 'parameters', the first code cell after the Colab cell"
    assert re.search(r"^preset(: str)? = \"\w+\"", tagged[0].source, re.M), tagged[0].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_only_checked_cells_carry_outputs(path: Path):
    nb = read(path)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if checked(cell) and path in LESSONS:
            assert cell.execution_count is not None and cell.outputs, f"{cell.id}: checked cell without its output"
            kinds = {o.output_type for o in cell.outputs}
            assert kinds <= {"stream", "execute_result"}, f"{cell.id}: only text is compared, got {kinds}"
            assert "stderr" not in {o.get("name") for o in cell.outputs}, f"{cell.id}: warnings in a checked cell"
        else:
            assert cell.execution_count is None and not cell.outputs, f"{cell.id}: stale output or execution count"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_a_lesson_ends_with_its_check_cell_and_the_passing_line(path: Path):
    nb = read(path)
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert checked(last), "the last code cell is the Check cell (# NBVAL_CHECK_OUTPUT)"
    assert "assert" in last.source
    match = CHECK_LINE.fullmatch(text_of(last))
    assert match, repr(text_of(last))
    number, passed, total = match.groups()
    assert number == path.name.split("_")[0] and passed == total and int(total) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_a_notebook_reads_as_a_chapter(path: Path):
    nb = read(path)
    first = nb.cells[2]  # after the Colab badge and install cells (docs/book/colab_cells.py)
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.name.split('_')[0]} "), first.source[:40]
    assert re.search(r"run time", first.source, re.I), "the header says how long it takes"
    headings = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert any(re.search(r"^#+ Summary and exercises", s, re.M) for s in headings)
    assert path.stat().st_size < MAX_BYTES, f"{path.stat().st_size} bytes: outputs or images were committed"


def test_the_sanitize_file_is_valid_regex_replace_pairs():
    cfg = configparser.ConfigParser()
    cfg.read(NB_DIR / "nbval_sanitize.cfg")
    assert cfg.sections()
    for section in cfg.sections():
        pattern = re.compile(cfg[section]["regex"])
        assert isinstance(cfg[section]["replace"], str) and pattern.pattern
