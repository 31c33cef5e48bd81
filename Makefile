# The Makefile is the interface: every target works from a fresh clone with only Python and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
PINS   := requirements/pinned.txt
# The newest-releases pass: its own environment, installed with no constraints.
NEWEST := .venv-newest
# nox, in a venv of its own (the cells make theirs under .nox/, one per cell: noxfile.py).
NOX_VENV := .venv-nox
NOX_VERSION := 2026.10.20

.PHONY: install test test-pinned test-newest matrix pins lint typecheck format check demo bench bench-quick chaos compat clean

$(STAMP): setup.cfg pyproject.toml $(PINS)
	@echo "==> creating $(VENV) and installing rq-signals with its test, dev and demo extras, pinned by $(PINS)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar off --upgrade pip
	$(PY) -m pip install --progress-bar off -c $(PINS) -e '.[test,dev,demo]'
	@touch $(STAMP)

install: $(STAMP)

# The whole suite on the pinned set, then a quick pass on the newest releases setup.cfg admits.
test: test-pinned test-newest

test-pinned: install
	@bash scripts/ensure-chromium.sh
	@echo "==> pytest (SQLite)"
	env -u TEST_DATABASE_URL $(BIN)/pytest
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "==> pytest (PostgreSQL: $$TEST_DATABASE_URL), database-backed tests"; \
		$(BIN)/pytest -m "not browser" tests/app; \
	fi

# Reinstalled every run (no stamp): "newest" means what the package index serves today.
test-newest:
	@echo "==> installing the newest releases into $(NEWEST) (no constraints)"
	@test -x $(NEWEST)/bin/python || $(PYTHON) -m venv $(NEWEST)
	$(NEWEST)/bin/python -m pip install --progress-bar off --quiet --upgrade pip
	$(NEWEST)/bin/python -m pip install --progress-bar off --quiet --upgrade --upgrade-strategy eager -e '.[test]'
	env -u TEST_DATABASE_URL $(NEWEST)/bin/python scripts/newest.py

# The suite (without chaos and browser tests) on each boundary of the versions setup.cfg declares:
# lowest, Django 5.2, 6.0 and 6.1 with the newest releases; one cell at a time (noxfile.py).
# `make matrix CELLS="lowest newest"` runs some of them.
CELLS ?=
matrix: install
	@test -x $(NOX_VENV)/bin/nox || { $(PYTHON) -m venv $(NOX_VENV) && \
		$(NOX_VENV)/bin/python -m pip install --progress-bar off --quiet 'nox==$(NOX_VERSION)'; }
	bash scripts/matrix.sh $(NOX_VENV)/bin/nox $(CELLS)

# Refresh the pins: the newest releases setup.cfg admits, resolved in a scratch environment.
pins:
	rm -rf .venv-pins
	$(PYTHON) -m venv .venv-pins
	.venv-pins/bin/python -m pip install --progress-bar off --quiet --upgrade pip
	.venv-pins/bin/python -m pip install --progress-bar off --quiet '.[test,dev,demo]'
	{ sed -n '/^#/p' $(PINS); .venv-pins/bin/python -m pip freeze --exclude-editable | grep -v '^rq-signals'; } > $(PINS).new
	mv $(PINS).new $(PINS)
	rm -rf .venv-pins
	@echo "==> $(PINS) refreshed; run make test, then commit it"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy


typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: lint test

demo: install
	$(PY) example_project/demo.py

bench: install
	$(PY) -m benchmarks

bench-quick: install
	$(PY) -m benchmarks --quick

chaos: install
	$(BIN)/pytest -m chaos --chaos-full tests/chaos

compat: install
	$(PY) scripts/compat/rq_suite.py

clean:
	rm -rf $(VENV) $(NEWEST) $(NOX_VENV) .nox build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis .demo example_project/var
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
