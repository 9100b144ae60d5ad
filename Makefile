# gatehouse: make install | run | test | bench | test-compose | lint
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run migrate test test-unit test-functional bench test-compose lint

install: $(STAMP)

# Reinstalls only when pyproject.toml changed; the code itself is installed
# editable, so edits need no reinstall.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: install
	exec $(PY) -m gatehouse.common.stack run

migrate: install
	$(PY) -m gatehouse.common.stack migrate

test: install
	$(VENV)/bin/pytest

test-unit: install
	$(VENV)/bin/pytest tests --ignore=tests/functional --ignore=tests/e2e

test-functional: install
	$(VENV)/bin/pytest tests/functional tests/e2e

bench: install
	$(PY) -m bench.run

test-compose: install
	$(PY) deploy/compose_test.py

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
