# Two commands matter: `make test` and (with the monitor issue) `make monitor`. Both set up .venv
# themselves; the install is redone only when pyproject.toml changes (stamp files below).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.stamp-dev
BENCH_STAMP := $(VENV)/.stamp-bench

PORT ?= 8866
SERVICE_PORT ?= 8765
FEED ?= sim
BROKER ?= paper

.PHONY: test lint bench setup clean monitor system-deps screenshot delta scanner

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11+ is required (found $$($(PYTHON) --version)); set PYTHON=..."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

$(BENCH_STAMP): pyproject.toml $(DEV_STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@touch $@

setup: $(DEV_STAMP)

# The desk service on the simulated market (paper broker, demo position) and the Voila monitor;
# prints the URL, Ctrl-C stops both. `make monitor PORT=9000` serves Voila elsewhere;
# `make monitor FEED=thetadata` (or FEED=replay:day.parquet, BROKER=ibkr-cpapi) picks the venue.
monitor: $(DEV_STAMP)
	$(BIN)/python -m kit monitor --port $(PORT) --service-port $(SERVICE_PORT) \
		--feed '$(FEED)' --broker '$(BROKER)'

# The Delta Exchange control panel (notebooks/delta_trader.ipynb) under Voila; the trader it starts
# runs as its own process (`kit delta run`). `make delta DELTA_PORT=9001`.
DELTA_PORT ?= 8867
delta: $(DEV_STAMP)
	$(BIN)/voila notebooks/delta_trader.ipynb --port=$(DELTA_PORT) --no-browser \
		--Voila.ip=127.0.0.1

# The alert-only watch (`kit watch`: market context, grid opportunities, manual positions' exits;
# never trades) and its Voila page (notebooks/scanner.ipynb, live over the gateway);
# Ctrl-C stops both.
# `make scanner UNDERLYING=NDX SCANNER_PORT=9002 FEED=thetadata`.
SCANNER_PORT ?= 8868
UNDERLYING ?= SPX
scanner: $(DEV_STAMP)
	$(BIN)/python -m kit watch --underlying '$(UNDERLYING)' --feed '$(FEED)' --port $(SCANNER_PORT)

# PostgreSQL and Chromium (and python3-venv before the first setup): installed when missing and
# this is root or has password-less sudo, else it stops at once with the apt-get command to run.
system-deps:
	@PYTHON='$(PYTHON)' VENV='$(VENV)' bash scripts/system-deps.sh

test: system-deps $(DEV_STAMP)
	$(BIN)/python -m pytest

# Refresh the README's screenshot (docs/monitor.png) from the browser test; `make test` never
# writes tracked files (the test screenshots into its temp directory).
screenshot: system-deps $(DEV_STAMP)
	KIT_SCREENSHOT=docs/monitor.png $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_browser.py -k test_monitor_end_to_end

lint: $(DEV_STAMP)
	$(BIN)/ruff check kit tests benchmarks
	$(BIN)/ruff format --check kit tests benchmarks

bench: $(BENCH_STAMP)
	@set -e; for b in benchmarks/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
