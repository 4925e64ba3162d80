# robustlayers — the two commands of the README quick start.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup setup-test demo test

setup:
	@sh scripts/setup.sh

setup-test:
	@sh scripts/setup.sh test

## Set up, then run the main job on the embedded default (Fashion-MNIST, CPU).
demo: setup
	$(PY) -m robustlayers.cli.main demo

## Set up (with the test tools), then run the whole test suite.
test: setup-test
	$(PY) -m pytest -n 2 tests

