# The two commands a newcomer needs: `make run` (the main job) and `make test` (every test).
# Both create .venv if it is missing and install into it. Torch goes in first, pinned, so that
# pip never resolves a torch of its own choosing; override the pin for your machine, e.g.
#   make test TORCH_SPEC="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := $(VENV)/torch-constraint.txt

.PHONY: run test lint format lab book clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, then everything else constrained to the torch that is installed.
$(CONSTRAINTS): | $(PY)
	$(PIP) install $(TORCH_SPEC)
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(CONSTRAINTS)

$(VENV)/.stamp-run: pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e ".[notebooks]"
	touch $@

$(VENV)/.stamp-dev: pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e ".[notebooks,dev,book]"
	touch $@ $(VENV)/.stamp-run $(VENV)/.stamp-book

$(VENV)/.stamp-book: pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e ".[notebooks,export,book]"
	touch $@

# The main job: notebooks/90_full_training.ipynb on the toy preset, executed by papermill into runs/
# (add -p preset k400 -p nproc 8 ... for a GPU run; see the README).
run: $(VENV)/.stamp-run
	mkdir -p runs
	$(PY) -m papermill notebooks/90_full_training.ipynb runs/90_full_training.ipynb -p preset toy --log-output

lint: $(VENV)/.stamp-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(VENV)/.stamp-dev
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint
	$(PY) -m pytest

# The course website: every notebook executed (smoke preset) in a scratch copy under build/book/, then the static
# site built into book/ (docs/book/make_book.py; the GitHub Pages workflow runs this same target).
book: $(VENV)/.stamp-book
	$(PY) docs/book/make_book.py

lab: $(VENV)/.stamp-run
	$(PY) -m jupyter lab notebooks

clean-venv:
	rm -rf $(VENV)
