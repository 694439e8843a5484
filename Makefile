# Two targets bootstrap everything from a bare Python 3: `make run` and `make test`.
# TORCH_SPEC picks the torch build: the default is the CPU wheel; users with GPUs pass their own,
# e.g. `make run TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
FAMILY ?= cartpole-10
OUT ?= runs/$(FAMILY)
PYTEST_ARGS ?=
BIN := $(VENV)/bin

.PHONY: run test test-slow lint bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[test,all]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/policygradex run --family $(FAMILY) --out $(OUT)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

# Fails when the slow tier collects nothing (pytest exit status 5): losing the `slow` markers must not pass CI.
test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 -q -m slow $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_features.py
