# The two commands a new user runs: `make up` and `make test`. Everything they need is installed
# from PyPI into .venv: direct dependencies pinned in pyproject.toml, everything else in
# constraints.txt, so every machine runs the same versions.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up test install install-test clean

up: install
	$(BIN)/steward up

test: install-test
	$(BIN)/python -m pytest

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	tests/install-chromium.sh
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
