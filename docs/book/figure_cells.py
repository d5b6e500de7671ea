"""Tag the code cells whose lesson is the picture they draw `hide-input`: the site folds their code.

    python docs/book/figure_cells.py    # idempotent: adds the tag where it is missing, changes nothing else

A folded cell shows its figure with a "Show code cell source" toggle above it (myst-nb); JupyterLab, nbval and
papermill ignore the tag. Folded are the cells that are only matplotlib plumbing around a picture the text
explains; cells whose code is the lesson (a computation checked against the package, then drawn) stay open.
`tests/test_book.py` checks that every cell listed here carries the tag.
"""

from __future__ import annotations

import sys

import nbformat
from colab_cells import NOTEBOOKS

TAG = "hide-input"
FOLDED = {  # notebook stem: ids of its figure cells
    "00_setup_and_first_look": ["c10"],  # one test clip per class
    "01_video_data": ["c08", "c14"],  # sampling timelines; a training batch
    "04_space_time_attention_schemes": ["c05"],  # who attends to whom under each scheme
    "06_train_on_toy_motions": ["c07", "c07b"],  # learning curves: this run, the shipped run
    "07_evaluate": ["c13"],  # the clips the model gets wrong
    "90_full_training": ["c11"],  # learning curves
}


def fold(stem: str, cell_ids: list[str]) -> bool:
    """Add TAG to the cells `cell_ids` of notebooks/`stem`.ipynb; True if the file changed."""
    path = NOTEBOOKS / f"{stem}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = {c.get("id"): c for c in nb.cells}
    missing = [i for i in cell_ids if i not in cells]
    if missing:
        raise SystemExit(f"{path.name} has no cell with id {', '.join(missing)}: update FOLDED in {__file__}")
    untagged = [cells[i] for i in cell_ids if TAG not in cells[i].metadata.get("tags", [])]
    for cell in untagged:
        cell.metadata["tags"] = [*cell.metadata.get("tags", []), TAG]
    if untagged:
        nbformat.write(nb, path)
    return bool(untagged)


def main() -> int:
    for stem, cell_ids in FOLDED.items():
        print(f"notebooks/{stem}.ipynb: {'tagged' if fold(stem, cell_ids) else 'already tagged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
