"""Sphinx configuration of the course website (`make book`; docs/book/make_book.py prepares the source folder).

The notebooks arrive executed (make_book.py runs them with papermill), so myst-nb only renders them. The source
folder mirrors the repository (notebooks/, benchmarks/ ...), which is what sphinx-book-theme's launch button
needs to point Colab at `notebooks/<name>.ipynb`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colab_cells import BRANCH, repository_url  # noqa: E402

project = "timesformer_lite"
html_title = "TimeSformer, built and trained on a laptop"
author = "the timesformer_lite authors"
copyright = "the timesformer_lite authors, Apache-2.0"

extensions = ["myst_nb", "sphinx-mathjax-offline"]  # MathJax from the site itself: no request to a CDN
exclude_patterns = ["data", "runs", "benchmarks", "notebooks/solutions", "**/.ipynb_checkpoints", "kernel"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type"]  # papermill's own metadata outputs

nb_execution_mode = "off"  # make_book.py executed every notebook already
nb_merge_streams = True  # one block per cell for its printed lines
nb_render_markdown_format = "myst"

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_last_updated_fmt = ""
html_show_sphinx = False
html_theme_options = {
    "repository_url": repository_url(),
    "repository_branch": BRANCH,
    "path_to_docs": "",
    "use_repository_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
html_context = {"default_mode": "light"}  # the figures are drawn on white; the reader can still switch to dark
html_favicon = "_static/favicon.svg"  # a page without one makes the browser ask for /favicon.ico, a 404
