# robustlayers — the two commands of the README quick start.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test

setup:
	@sh scripts/setup.sh

## Set up, then run the main job on the embedded default (Fashion-MNIST, CPU).
demo: setup
	$(PY) -m robustlayers.cli.main demo

## Set up, then run the whole test suite.
test: setup
	$(PY) -m pytest -n 2 tests

