# `make train`: set up .venv if needed, then a short default training run (progress bar, metrics, checkpoint).
# `make test`: set up .venv if needed, then the CI test suite (slow checks excluded; `make test-slow` for those),
# one pytest worker per core, at most TEST_WORKERS (each test runs torch on one thread).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=
TEST_WORKERS ?= 4

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the pinned CPU build first, so that no looser requirement pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

train: $(VENV)/.installed
	$(PY) train.py +experiment=quick $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q -n auto --maxprocesses $(TEST_WORKERS) $(ARGS)

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow -n auto --maxprocesses $(TEST_WORKERS) $(ARGS)

bench: $(VENV)/.installed
	$(PY) bench/update_speed.py

.PHONY: install train test test-slow bench
