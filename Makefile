# The two commands a new user runs: `make up` and `make test`. Everything they need is installed
# from PyPI into .venv: direct dependencies pinned in pyproject.toml, everything else in
# constraints.txt, so every machine runs the same versions.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up test load install install-test install-load clean

up: install
	$(BIN)/steward up

test: install-test
	$(BIN)/python -m pytest

# The load test, against a Steward already running (`make up` in another terminal): LOAD_RATE new
# compliance reviews a second from LOAD_CLIENTS clients for LOAD_DURATION, every run checked at
# the end (tests/load/).
LOAD_HOST ?= http://127.0.0.1:8000
LOAD_RATE ?= 4
LOAD_CLIENTS ?= 10
LOAD_DURATION ?= 5m
load: install-load
	LOAD_RATE=$(LOAD_RATE) $(BIN)/locust -f tests/load/locustfile.py --headless --only-summary \
		--host $(LOAD_HOST) --users $(LOAD_CLIENTS) --spawn-rate $(LOAD_CLIENTS) --run-time $(LOAD_DURATION) \
		--stop-timeout 30

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-load: $(VENV)/.installed-load

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-load: pyproject.toml constraints.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[load]'
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	tests/install-debian.sh chromium chromium "browser tests"
	tests/install-debian.sh promtool prometheus "alert-rule tests"
	tests/install-debian.sh redis-server redis-server "Redis-backed rate-limit tests"
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
