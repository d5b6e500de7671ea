"""`make book`: execute the course notebooks and build the course website in book/.

    python docs/book/make_book.py                 # every notebook; the site in book/
    python docs/book/make_book.py --only 03,08    # a subset (the browser test builds two lessons)

The steps, which the publishing workflow (.github/workflows/book.yml) runs through `make book` as well:
1. A scratch copy of notebooks/ and benchmarks/ in build/book/src, the notebooks' working root as in
   tests/test_notebooks.py, so that the toy data, the runs and the executed notebooks never land in the
   repository. The smoke preset's toy data is generated there once, before the notebooks run side by side.
2. Every notebook executed by papermill with this interpreter's kernel: the lessons on their default, the
   `smoke` preset with the shipped toy model, and 90_full_training with `-p preset smoke` (its default trains
   for minutes). `--jobs` notebooks at a time, each kernel with cores/jobs torch threads.
3. The executed copies made fit for a static page: the Colab badge is served by the site itself (no request to
   a third party), and a widget's output (notebook 08's explorer needs a live kernel) becomes a still of its
   image with a note saying where to run it.
4. The front page (the lessons, their run times) and the results page (Table 1 from benchmarks/table1.json,
   the README's tables) written from the repository's files, then sphinx-build (docs/book/conf.py: myst-nb,
   sphinx-book-theme, no execution of its own) into book/.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colab_cells import COLAB_BADGE_SVG, ROOT, course_notebooks, repository_url  # noqa: E402

if str(ROOT / "benchmarks") not in sys.path:  # jobs.py (runs at once, as the benchmarks run theirs) and table1.py
    sys.path.append(str(ROOT / "benchmarks"))
from jobs import check_jobs, run_all, threads_per_job  # noqa: E402

BOOK_DIR = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 600  # smoke cells take seconds; a hang fails after 10 minutes, a busy machine does not
PARAMETERS = {"90_full_training": {"preset": "smoke"}}  # notebooks whose default preset is not smoke
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
EXPLORER_NOTE = (
    "<p class='widget-still'>A still of the interactive output, as first drawn: its controls need a running "
    "kernel. Open this lesson in Colab (the badge at the top) or run <code>make lab</code> to move them.</p>"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "book", help="where the site goes (default: book/)")
    parser.add_argument("--scratch", type=Path, default=ROOT / "build" / "book", help="working folder")
    parser.add_argument("--only", default="", help="comma-separated notebook numbers, e.g. 03,08 (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="notebooks executed at a time (default: 2)")
    args = parser.parse_args(argv)
    try:
        check_jobs(args.jobs)
    except ValueError as e:
        parser.error(str(e))
    return args


def selected_notebooks(only: str) -> list[Path]:
    """The course notebooks in course order, or those whose number is listed in `only`."""
    notebooks = course_notebooks()
    if not only:
        return notebooks
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    numbers = {p.name.split("_")[0]: p for p in notebooks}
    unknown = [n for n in wanted if n not in numbers]
    if unknown:
        raise SystemExit(f"--only {only}: no notebook numbered {', '.join(unknown)}; choose from {', '.join(numbers)}")
    return [numbers[n] for n in numbers if n in wanted]


def prepare_scratch(scratch: Path, notebooks: list[Path]) -> Path:
    """A fresh working root: the chosen notebooks, their solutions, benchmarks/; returns the Sphinx source folder."""
    shutil.rmtree(scratch, ignore_errors=True)
    src = scratch / "src"
    (src / "notebooks").mkdir(parents=True)
    for path in notebooks:
        shutil.copy2(path, src / "notebooks" / path.name)
    shutil.copytree(ROOT / "notebooks" / "solutions", src / "notebooks" / "solutions")
    shutil.copytree(ROOT / "benchmarks", src / "benchmarks", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(BOOK_DIR / "colab-badge.svg", src / "colab-badge.svg")
    return src


def this_interpreters_kernel(scratch: Path) -> dict[str, str]:
    """Environment whose `python3` kernel is this interpreter, whatever kernels the user's Jupyter knows."""
    prefix = scratch / "kernel"
    cmd = [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3"]
    subprocess.run(cmd, check=True, capture_output=True)
    return {
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "TQDM_DISABLE": "1",
    }


def make_smoke_data(src: Path) -> None:
    """The smoke preset's toy clips, made once so that notebooks running side by side find them ready."""
    import timesformer_lite as tl
    from timesformer_lite.data import ensure_toy_data_for

    data = tl.load_config("smoke").data
    ensure_toy_data_for(data, src / data.root)


def execute(path: Path) -> float:
    """Run one notebook in place (papermill, python3 kernel, from its folder); returns its wall time in seconds."""
    import papermill

    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(path),
            str(path),
            parameters=PARAMETERS.get(path.stem, {}),
            kernel_name="python3",
            cwd=str(path.parent),
            progress_bar=False,
            execution_timeout=CELL_TIMEOUT_S,
        )
    except papermill.PapermillExecutionError as e:  # a page must not show a failed lesson: stop the build
        raise RuntimeError(f"{path.name} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); see {path}") from None
    return time.perf_counter() - start


def execute_all(paths: list[Path], jobs: int) -> dict[str, float]:
    """Execute `paths`, `jobs` at a time, each kernel with its share of the cores; {notebook stem: seconds}."""
    threads = threads_per_job(jobs)
    os.environ.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))  # inherited by every kernel
    seconds: dict[str, float] = {}
    run_all(execute, {p.stem: (p,) for p in paths}, jobs, seconds.__setitem__)
    return {p.stem: seconds[p.stem] for p in paths}


def widget_image(state: dict, model_id: str) -> str | None:
    """Base64 PNG of the first Image widget inside the widget `model_id` (its children, depth first), if any."""
    model = state.get(model_id)
    if model is None:
        return None
    if model["model_name"] == "ImageModel":
        for buffer in model.get("buffers", []):
            if buffer["path"] == ["value"] and model["state"].get("format", "png") == "png":
                return buffer["data"]
        return None
    for child in model["state"].get("children", []):
        found = widget_image(state, child.removeprefix("IPY_MODEL_"))
        if found:
            return found
    return None


def make_static(path: Path) -> None:
    """Fit an executed notebook for a static page: a local Colab badge, widget outputs as stills."""
    nb = nbformat.read(path, as_version=4)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(COLAB_BADGE_SVG, "/colab-badge.svg")
            continue
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            outputs.append(nbformat.v4.new_output("display_data", data={"text/html": EXPLORER_NOTE}))
            png = widget_image(state, view["model_id"])
            if png:
                outputs.append(nbformat.v4.new_output("display_data", data={"image/png": png}))
        if cell.cell_type == "code":
            cell.outputs = outputs
    nbformat.write(nb, path)


def lesson_title(nb: nbformat.NotebookNode) -> str:
    """The notebook's chapter title: its first level-1 heading, without the '#'."""
    for cell in nb.cells:
        match = re.search(r"^# (.+)$", cell.source, re.M) if cell.cell_type == "markdown" else None
        if match:
            return match.group(1).strip()
    raise ValueError("notebook has no '# title' heading")


def run_time(nb: nbformat.NotebookNode) -> str:
    """The first sentence of the notebook's "**Run time.**" paragraph (the lesson's own estimate)."""
    for cell in nb.cells:
        # a sentence ends at a full stop before a capital letter or the end ("papermill ... -p" is not one)
        match = re.search(r"\*\*Run time\.\*\*\s+(.+?\.)(?=\s+[A-Z]|\s*$)", cell.source, re.S)
        match = match if cell.cell_type == "markdown" else None
        if match:
            return " ".join(match.group(1).split())
    return "not stated"


def lessons_table(paths: list[Path], seconds: dict[str, float]) -> str:
    """Markdown table of the lessons: link, the lesson's run-time estimate, and its execution time in this build."""
    rows = ["| lesson | run time (the lesson's own estimate) | this build |", "| --- | --- | ---: |"]
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        title = lesson_title(nb).replace("|", "\\|")
        rows.append(f"| [{title}](notebooks/{path.name}) | {run_time(nb)} | {seconds[path.stem]:.0f} s |")
    return "\n".join(rows)


def table_1() -> str:
    """The recorded Table 1 (benchmarks/table1.json) in the words and tables of benchmarks/table1.py itself: the
    README's account of the run (with the paper's numbers beside it), then every column of every row."""
    table1 = importlib.import_module("table1")  # the one module object of this process (tests/bench_scripts.py)
    recorded = json.loads((ROOT / "benchmarks" / "table1.json").read_text())
    every_column = ["", "Every column of the recorded run:", "", *table1.markdown(recorded["rows"])]
    return "\n".join([*table1.readme_lines(recorded), *every_column])


def readme_section(heading: str) -> str:
    """The README's section under `## heading` (to the next `## `), its links made absolute for the site."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## )", text, re.S | re.M)
    if match is None:
        raise SystemExit(f"README.md has no '## {heading}' section: update RESULT_SECTIONS in {__file__}")
    blob = f"{repository_url()}/blob/main/"
    return re.sub(r"\]\((?!https?://|#)([^)]+)\)", lambda m: f"]({blob}{m.group(1)})", match.group(1))


RESULT_SECTIONS = ["The five attention schemes", "Speed"]


def write_pages(src: Path, paths: list[Path], seconds: dict[str, float]) -> None:
    """index.md (front page) and results.md from their templates in docs/book/, with the generated parts."""
    toctree = "\n".join(f"notebooks/{p.stem}" for p in paths)
    index = (BOOK_DIR / "index.md").read_text()
    index = index.replace("{{ lessons }}", lessons_table(paths, seconds)).replace("{{ toctree }}", toctree)
    index = index.replace("{{ repository }}", repository_url())
    (src / "index.md").write_text(index)
    sections = "\n\n".join(f"## {h}\n{readme_section(h)}" for h in RESULT_SECTIONS)
    results = (BOOK_DIR / "results.md").read_text().replace("{{ table_1 }}", table_1())
    (src / "results.md").write_text(results.replace("{{ readme_sections }}", sections))


def sphinx(src: Path, out: Path, scratch: Path) -> None:
    """sphinx-build with docs/book/conf.py; warnings are errors, so a broken link or page fails the build.

    The site is built inside `scratch` and then moved to `out`: myst-nb writes the notebooks' outputs beside the
    build folder (`../jupyter_execute`), which must not be the repository's root."""
    html = scratch / "html"
    shutil.rmtree(html, ignore_errors=True)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(BOOK_DIR), "-W", "--keep-going", "-q"]
    cmd += ["-d", str(scratch / "doctrees"), str(src), str(html)]
    subprocess.run(cmd, check=True)
    shutil.rmtree(out, ignore_errors=True)
    shutil.move(html, out)


def slowest_first(paths: list[Path], scratch: Path) -> list[Path]:
    """`paths` ordered by the seconds the last build in `scratch` took for each (unknown ones last, in course
    order), so that the long notebooks do not start at the end while the other job waits."""
    timings = scratch / "timings.json"
    last = json.loads(timings.read_text())["notebooks"] if timings.is_file() else {}
    return sorted(paths, key=lambda p: -last.get(p.stem, -1))  # sorted() is stable: course order among equals


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    notebooks = selected_notebooks(args.only)
    order = [p.stem for p in slowest_first(notebooks, args.scratch)]
    src = prepare_scratch(args.scratch, notebooks)
    os.environ.update(this_interpreters_kernel(args.scratch))
    make_smoke_data(src)
    paths = [src / "notebooks" / p.name for p in notebooks]
    try:
        seconds = execute_all(sorted(paths, key=lambda p: order.index(p.stem)), args.jobs)
    except RuntimeError as e:
        raise SystemExit(f"make book: {e}") from None
    executed = time.perf_counter() - start
    for path in paths:
        make_static(path)
    write_pages(src, paths, seconds)
    sphinx(src, args.out, args.scratch)
    (args.scratch / "timings.json").write_text(json.dumps({"notebooks": seconds, "jobs": args.jobs}, indent=1))
    total = time.perf_counter() - start
    print(f"executed {len(paths)} notebooks in {executed:.0f} s ({args.jobs} at a time); site in {total:.0f} s")
    print(f"open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
