# The Makefile is the interface: every target works from a fresh clone with only Python and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint typecheck format check demo bench bench-quick chaos compat clean

$(STAMP): setup.cfg pyproject.toml
	@echo "==> creating $(VENV) and installing rq-signals with its test, dev and demo extras"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar off --upgrade pip
	$(PY) -m pip install --progress-bar off -e '.[test,dev,demo]'
	@touch $(STAMP)

install: $(STAMP)

test: install
	@bash scripts/ensure-chromium.sh
	@echo "==> pytest (SQLite)"
	env -u TEST_DATABASE_URL $(BIN)/pytest
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "==> pytest (PostgreSQL: $$TEST_DATABASE_URL), database-backed tests"; \
		$(BIN)/pytest -m "not browser" tests/app; \
	fi

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
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis .demo example_project/var
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
