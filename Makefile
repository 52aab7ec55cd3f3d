# Two entry points for a fresh machine; each sets up .venv on first use.
#   make quickstart   train xgboost on the embedded sample data and print where the run went
#   make test         run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: quickstart test setup

setup: $(VENV)/.installed

# The CPU build of torch first, pinned: with it in place nothing else pulls a CUDA build.
# Elsewhere, add --index-url https://download.pytorch.org/whl/cpu to get the CPU build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq torch==2.13.0
	$(BIN)/pip install -qq -e '.[test]'
	touch $@

quickstart: setup
	$(BIN)/mlfactory fit --model xgboost

test: setup
	$(BIN)/python -m pytest -q
