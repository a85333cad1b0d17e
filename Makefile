# The two commands the README gives: `make demo` and `make test`. Both build the venv from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck pytest bench bench-simulator clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/idsync demo

lint: install
	$(VENV)/bin/ruff check sync tests benchmarks migrations
	$(VENV)/bin/ruff format --check sync tests benchmarks migrations
	$(VENV)/bin/hadolint Dockerfile

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench-simulator: install
	$(PY) benchmarks/simulator_bench.py

bench: install
	$(PY) benchmarks/reconcile_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build dist
