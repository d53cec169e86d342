# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install bench acceptance locales clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/vigil $(ARGS) run

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/time_to_protect.py

# Vigil run as a user runs it (paper, console chat) under the `mild` chaos profile, ~40 s.
acceptance: install
	$(BIN)/python bench/acceptance.py

# Refresh the message catalogs after changing user-facing text (Babel, already installed).
locales: install
	$(BIN)/pybabel extract -k _ -k __ -o locales/messages.pot bot engine vigil
	$(BIN)/pybabel update -i locales/messages.pot -d locales -D messages --no-fuzzy-matching

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
