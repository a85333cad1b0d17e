# The two commands the README gives: `make demo` and `make test`. Both build the venv from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck pytest tools lock stress chaos bench bench-simulator clean

# promtool (checks deploy/prometheus/alerts.yml) comes from Debian's `prometheus` package, unpacked
# into .tools/ rather than installed: the package's maintainer scripts would start a Prometheus
# server, and a test needs only the one binary. tests/deploy finds it there.
TOOLS := .tools
PROMTOOL := $(TOOLS)/usr/bin/promtool

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,simulator]'
	touch $(STAMP)

install: $(STAMP)

$(PROMTOOL):
	mkdir -p $(TOOLS)/deb
	cd $(TOOLS)/deb && { apt-get download prometheus || { apt-get update && apt-get download prometheus; }; }
	dpkg-deb -x $$(ls $(TOOLS)/deb/prometheus_*.deb | head -n 1) $(TOOLS)
	$(PROMTOOL) --version

# Without apt-get (not a Debian machine) promtool cannot be had: outside CI the two alert-rule
# tests then skip with the reason; in CI (CI=true) the missing tool fails the run.
tools:
	@if [ -x $(PROMTOOL) ] || command -v apt-get >/dev/null 2>&1 || [ "$$CI" = true ]; then \
		$(MAKE) --no-print-directory $(PROMTOOL); \
	else \
		echo "promtool: no apt-get on this machine; the alert-rule tests will skip (CI installs it)"; \
	fi

# requirements.lock: the runtime dependencies (no extras) pinned with their hashes, which the
# Dockerfile installs with --require-hashes. Rewrite it after changing `dependencies`.
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
		--no-header --annotation-style line --quiet -o requirements.lock

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

test: tools lint typecheck pytest

# The process, signal, lock and migration tests, STRESS_RUNS times in a row, with a pass count.
STRESS_RUNS ?= 20
stress: install
	CI=true $(PY) tests/stress.py --runs $(STRESS_RUNS)

# The chaos suite (tests/e2e/test_e2e_chaos.py): its own CI step, left out of `make test`. Quiet
# unless a test fails; `make chaos CHAOS_ARGS=-s` prints its figures and the runs' logs.
CHAOS_ARGS ?=
chaos: install
	CI=true $(VENV)/bin/pytest -m chaos -q -p no:cacheprovider $(CHAOS_ARGS) tests/e2e/test_e2e_chaos.py

bench-simulator: install
	$(PY) benchmarks/simulator_bench.py

bench: install
	$(PY) benchmarks/reconcile_bench.py
	$(PY) benchmarks/bulk_bench.py
	$(PY) benchmarks/memory_bench.py
	$(PY) benchmarks/incremental_bench.py
	$(PY) benchmarks/delta_bench.py
	$(PY) benchmarks/million_bench.py
	$(PY) benchmarks/many_syncs_bench.py --employees 200

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache build dist
