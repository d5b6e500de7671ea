"""The first two cells of every notebook: an "Open in Colab" badge, and a cell that installs the course on Colab.

    python docs/book/colab_cells.py    # after adding or renaming a notebook, or changing GITHUB_REPOSITORY

Idempotent: a notebook that has the two cells gets them rewritten in place (found by their cell ids), one that
lacks them gets them inserted at the top; nothing else in the notebook changes. `tests/test_book.py` checks that
every notebook holds exactly the cells this script writes, so a stale badge fails the tests.

On Colab the install cell clones the repository into /content (the lessons run solutions and benchmark scripts
from it, and write their toy data under it, as they do in a local checkout), `pip install`s the package from that
clone with the `export` extra (notebook 09 runs onnxruntime), and moves into its `notebooks/` folder. Colab's
own torch satisfies `torch>=2.3`, so pip keeps it. Anywhere else the cell only imports `sys` and prints nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

# owner/name of the repository on GitHub: the badges, the install cell and the site's links are all made from it
GITHUB_REPOSITORY = "timesformer-lite/timesformer_lite"
BRANCH = "main"
COLAB_BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_ID, INSTALL_ID = "colab-badge", "colab-install"
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

INSTALL_SOURCE = """\
# On Colab: fetch the course and install its package (about a minute; Colab's torch is kept). Elsewhere: nothing.
import sys

if "google.colab" in sys.modules:
    import importlib.util
    import os
    import subprocess

    repo = "/content/{name}"
    if not os.path.isdir(repo):
        url = "{url}.git"
        subprocess.run(["git", "clone", "--quiet", "--depth=1", url, repo], check=True)
    if importlib.util.find_spec("timesformer_lite") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"{{repo}}[export]"], check=True)
    os.chdir(f"{{repo}}/notebooks")"""


def repository_url() -> str:
    return f"https://github.com/{GITHUB_REPOSITORY}"


def site_url() -> str:
    """Where GitHub Pages publishes the course website (.github/workflows/book.yml)."""
    owner, name = GITHUB_REPOSITORY.split("/")
    return f"https://{owner.lower()}.github.io/{name}/"


def colab_url(notebook: Path) -> str:
    """Colab's address of `notebook` (a path under notebooks/) on the repository's main branch."""
    path = notebook.resolve().relative_to(ROOT).as_posix()
    return f"https://colab.research.google.com/github/{GITHUB_REPOSITORY}/blob/{BRANCH}/{path}"


def colab_cells(notebook: Path) -> list[nbformat.NotebookNode]:
    """The badge cell and the install cell that `notebook` must start with."""
    badge = nbformat.v4.new_markdown_cell(f"[![Open In Colab]({COLAB_BADGE_SVG})]({colab_url(notebook)})")
    name = GITHUB_REPOSITORY.split("/")[1]
    install = nbformat.v4.new_code_cell(INSTALL_SOURCE.format(name=name, url=repository_url()))
    install.metadata["tags"] = ["remove-cell"]  # the site leaves it out: a web reader needs no install step
    badge.id, install.id = BADGE_ID, INSTALL_ID
    return [badge, install]


def course_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))


def add_colab_cells(notebook: Path) -> bool:
    """Put the two Colab cells first in `notebook`, replacing older versions of them; True if the file changed."""
    nb = nbformat.read(notebook, as_version=4)
    rest = [c for c in nb.cells if c.get("id") not in (BADGE_ID, INSTALL_ID)]
    cells = colab_cells(notebook) + rest
    if [(c.cell_type, c.source, c.metadata) for c in cells] == [(c.cell_type, c.source, c.metadata) for c in nb.cells]:
        return False
    nb.cells = cells
    nbformat.validate(nb)
    nbformat.write(nb, notebook)
    return True


def main() -> int:
    for notebook in course_notebooks():
        changed = add_colab_cells(notebook)
        print(f"{notebook.relative_to(ROOT)}: {'updated' if changed else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
