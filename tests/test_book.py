"""The course website's parts that need no browser: the Colab cells of every notebook, the folded figure cells,
the pages make_book.py writes (Table 1, the README's tables, the lessons' run times), the static form of widget
outputs, `make book` and the GitHub Pages workflow. The built site itself is tested in a real browser in
test_browser.py.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import nbformat
import pytest
import yaml
from bench_scripts import bench_module

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "book"))
import colab_cells  # noqa: E402
import figure_cells  # noqa: E402
import make_book  # noqa: E402

NOTEBOOKS = colab_cells.course_notebooks()
ids = [p.stem for p in NOTEBOOKS]


def test_every_course_notebook_is_covered():
    stems = {p.name.split("_")[0] for p in NOTEBOOKS}
    assert {"00", "01", "02", "03", "04", "05", "06", "06b", "07", "08", "09", "90"} <= stems, stems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_a_notebook_starts_with_the_colab_badge_and_install_cell_of_colab_cells_py(path: Path):
    cells = nbformat.read(path, as_version=4).cells
    expected = colab_cells.colab_cells(path)
    got = [(c.id, c.cell_type, c.source, c.metadata) for c in cells[:2]]
    assert got == [(c.id, c.cell_type, c.source, c.metadata) for c in expected], (
        "stale or missing Colab cells: run `python docs/book/colab_cells.py`"
    )
    assert [c.id for c in cells].count(colab_cells.BADGE_ID) == 1
    assert [c.id for c in cells].count(colab_cells.INSTALL_ID) == 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_the_colab_badge_opens_this_notebooks_path_in_the_repository(path: Path):
    badge = nbformat.read(path, as_version=4).cells[0].source
    (link,) = re.findall(r"\]\((https://colab\.research\.google\.com/[^)]+)\)$", badge)
    repo = colab_cells.GITHUB_REPOSITORY
    assert link == f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{path.name}"


def install_source() -> str:
    return colab_cells.colab_cells(NOTEBOOKS[0])[1].source


def run_install_cell(monkeypatch, *, on_colab: bool, cloned: bool, installed: bool) -> tuple[list, list, str]:
    """Execute the install cell with subprocess.run, os.chdir and the file checks faked; (commands, chdirs, stdout)."""
    import importlib.util
    import os
    import subprocess as sp
    import types

    commands, chdirs = [], []
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(sp, "run", lambda cmd, **kw: commands.append((cmd, kw)))
    monkeypatch.setattr(os, "chdir", chdirs.append)
    real_isdir, real_find_spec = os.path.isdir, importlib.util.find_spec
    monkeypatch.setattr(os.path, "isdir", lambda p: cloned if p.startswith("/content/") else real_isdir(p))
    fake_spec = object() if installed else None
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: fake_spec if name == "timesformer_lite" else real_find_spec(name)
    )
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(install_source(), "colab-install", "exec"), {})
    return commands, chdirs, out.getvalue()


def test_the_install_cell_does_nothing_and_prints_nothing_outside_colab(monkeypatch):
    commands, chdirs, printed = run_install_cell(monkeypatch, on_colab=False, cloned=False, installed=False)
    assert (commands, chdirs, printed) == ([], [], "")


def test_on_colab_the_install_cell_clones_installs_with_pip_and_moves_into_notebooks(monkeypatch):
    commands, chdirs, _ = run_install_cell(monkeypatch, on_colab=True, cloned=False, installed=False)
    repo = f"/content/{colab_cells.GITHUB_REPOSITORY.split('/')[1]}"
    assert [cmd for cmd, _ in commands] == [
        ["git", "clone", "--quiet", "--depth=1", f"{colab_cells.repository_url()}.git", repo],
        [sys.executable, "-m", "pip", "install", "--quiet", f"{repo}[export]"],  # no torch: Colab's is kept
    ]
    assert all(kw == {"check": True} for _, kw in commands)  # a failed clone or install stops the notebook
    assert chdirs == [f"{repo}/notebooks"]  # the notebooks' first cell then works from the clone's root


def test_on_colab_a_second_run_neither_clones_nor_installs_again(monkeypatch):
    commands, chdirs, _ = run_install_cell(monkeypatch, on_colab=True, cloned=True, installed=True)
    assert commands == [] and len(chdirs) == 1


def test_the_install_cell_installs_an_extra_the_package_declares():
    extras = re.findall(r'\[(\w+)\]"\]', install_source())
    declared = set(
        __import__("tomllib").loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    assert extras and set(extras) <= declared, (extras, declared)


def test_the_colab_cells_script_is_idempotent(tmp_path, monkeypatch):
    copy = tmp_path / "notebooks"
    copy.mkdir()
    nb = nbformat.read(NOTEBOOKS[3], as_version=4)
    nb.cells = nb.cells[2:]  # as the notebook was before the Colab cells
    nbformat.write(nb, copy / NOTEBOOKS[3].name)
    monkeypatch.setattr(colab_cells, "ROOT", tmp_path)
    assert colab_cells.add_colab_cells(copy / NOTEBOOKS[3].name) is True
    once = (copy / NOTEBOOKS[3].name).read_text()
    assert colab_cells.add_colab_cells(copy / NOTEBOOKS[3].name) is False
    assert (copy / NOTEBOOKS[3].name).read_text() == once
    assert nbformat.reads(once, as_version=4).cells[2:] == nb.cells


@pytest.mark.parametrize("stem", sorted(figure_cells.FOLDED))
def test_the_figure_cells_listed_in_figure_cells_py_are_folded_and_draw(stem: str):
    cells = {c.get("id"): c for c in nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4).cells}
    for cell_id in figure_cells.FOLDED[stem]:
        cell = cells[cell_id]
        assert figure_cells.TAG in cell.metadata.get("tags", []), f"{stem} {cell_id}: run docs/book/figure_cells.py"
        assert re.search(r"plt\.show\(\)|display\(", cell.source), f"{stem} {cell_id} draws no figure"


def test_table_1_is_table1_pys_account_of_the_recorded_run_with_a_row_per_model():
    recorded = json.loads((ROOT / "benchmarks" / "table1.json").read_text())
    text = make_book.table_1()
    tables = [block.splitlines() for block in text.split("\n\n") if block.startswith("| ")]
    assert len(tables) == 2  # the README's table beside the paper's numbers, then every column
    for table in tables:
        assert len(table[2:]) == len(recorded["rows"]) == 7
        for line, row in zip(table[2:], recorded["rows"]):
            assert f"| {100 * row['test_top1']:.1f} " in line, (line, row["test_top1"])
    assert recorded["date"] in text


def test_the_readme_sections_come_with_their_tables_and_absolute_links():
    speed = make_book.readme_section("Speed")
    recorded = bench_module("results").read_block((ROOT / "README.md").read_text(), "speed_cpu")

    def table(lines: list[str]) -> list[str]:
        return [line for line in lines if line.startswith("| ")]

    assert table(speed.splitlines()) == table(recorded)  # the section's one table is the recorded suite's
    assert "| forward 8x224 D768 depth 12 fp32: tl.fuse(model) / HF (clips/s) |" in speed and "Targets met:" in speed
    assert "(benchmarks/RESULTS.md)" not in speed
    assert f"]({colab_cells.repository_url()}/blob/main/benchmarks/RESULTS.md)" in speed
    schemes = make_book.readme_section("The five attention schemes")
    assert "| `divided_space_time` (default) |" in schemes
    with pytest.raises(SystemExit, match="no '## Nonexistent' section"):
        make_book.readme_section("Nonexistent")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_the_front_page_finds_each_lessons_title_and_run_time(path: Path):
    nb = nbformat.read(path, as_version=4)
    assert make_book.lesson_title(nb).startswith(path.name.split("_")[0] + " ")
    estimate = make_book.run_time(nb)
    assert estimate != "not stated" and estimate.endswith(".") and len(estimate) > 15, estimate
    assert not re.search(r"(\s|\.\.)\.$", estimate), estimate  # an ellipsis ("papermill ...") ends no sentence


def test_lessons_can_be_chosen_by_number_in_course_order():
    assert [p.name[:3] for p in make_book.selected_notebooks("08, 03")] == ["03_", "08_"]
    assert make_book.selected_notebooks("") == NOTEBOOKS
    with pytest.raises(SystemExit, match="no notebook numbered 42"):
        make_book.selected_notebooks("03,42")


def widget_notebook(path: Path) -> None:
    """An executed notebook as papermill leaves it: a Colab badge, and an explorer-like widget (a VBox holding a
    slider and an Image) whose state nbclient stored in the notebook's metadata."""
    png = base64.b64encode(b"\x89PNG fake image bytes").decode()
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_slider", "IPY_MODEL_img"]}},
        "slider": {"model_name": "IntSliderModel", "state": {"value": 1}},
        "img": {"model_name": "ImageModel", "state": {"format": "png"}, "buffers": [{"path": ["value"], "data": png}]},
    }
    badge = nbformat.v4.new_markdown_cell(f"[![Open In Colab]({colab_cells.COLAB_BADGE_SVG})](https://x)")
    cell = nbformat.v4.new_code_cell("explorer.widget")
    view = {"version_major": 2, "version_minor": 0, "model_id": "box"}
    cell.outputs = [nbformat.v4.new_output("display_data", data={make_book.WIDGET_VIEW: view, "text/plain": "VBox()"})]
    nb = nbformat.v4.new_notebook(cells=[badge, cell])
    nb.metadata["widgets"] = {make_book.WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    nbformat.write(nb, path)


def test_a_widget_output_becomes_a_note_and_a_still_of_its_image_and_the_badge_is_served_locally(tmp_path):
    path = tmp_path / "nb.ipynb"
    widget_notebook(path)
    make_book.make_static(path)
    nb = nbformat.read(path, as_version=4)
    assert "widgets" not in nb.metadata  # no widget state: the page loads no widget JavaScript from a CDN
    note, still = nb.cells[1].outputs
    assert "running kernel" in note.data["text/html"]
    assert base64.b64decode(still.data["image/png"]) == b"\x89PNG fake image bytes"
    assert nb.cells[0].source == "[![Open In Colab](/colab-badge.svg)](https://x)"


def test_makefile_book_target_runs_the_builder_and_book_is_git_ignored():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^book: \$\(VENV\)/\.stamp-book\n\t\$\(PY\) docs/book/make_book\.py$", makefile, re.M)
    assert re.search(r'stamp-book:.*\n\t\$\(PIP\) install .*"\.\[notebooks,export,book\]"', makefile)
    ignored = subprocess.run(["git", "check-ignore", "-q", "book/index.html"], cwd=ROOT)
    assert ignored.returncode == 0
    sources = subprocess.run(["git", "check-ignore", "-q", "docs/book/make_book.py"], cwd=ROOT)
    assert sources.returncode == 1  # only the built site is ignored, not the site's sources


def test_the_pages_workflow_publishes_what_make_book_builds_on_every_push_to_main():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert on["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build_steps = workflow["jobs"]["build"]["steps"]
    runs = [s["run"] for s in build_steps if "run" in s]
    assert len(runs) == 1 and runs[0].startswith("make book")  # the local command, nothing more
    upload = next(s for s in build_steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "book"
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["steps"][0]["uses"].startswith("actions/deploy-pages")
    pin = re.search(r"^TORCH_SPEC \?= (torch==\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert f'TORCH_SPEC="{pin} ' in runs[0]  # the CPU build of the torch the Makefile pins


def test_the_readme_links_the_published_site_and_names_make_book():
    readme = (ROOT / "README.md").read_text()
    assert colab_cells.site_url() in readme  # changes with GITHUB_REPOSITORY in docs/book/colab_cells.py
    assert "`make book`" in readme and "Why Sphinx with myst-nb" in readme


def test_notebooks_run_slowest_first_by_the_last_builds_timings(tmp_path):
    paths = NOTEBOOKS[:4]
    assert make_book.slowest_first(paths, tmp_path) == paths  # no earlier build: course order
    last = {paths[2].stem: 70.0, paths[0].stem: 10.0}
    (tmp_path / "timings.json").write_text(json.dumps({"notebooks": last, "jobs": 2}))
    assert make_book.slowest_first(paths, tmp_path) == [paths[2], paths[0], paths[1], paths[3]]
