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

# Each step says what it installs: on a fresh machine the whole bootstrap takes a few minutes (issue 16).
$(BIN)/.installed: pyproject.toml
	@echo "[bootstrap 1/4] creating the virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "[bootstrap 2/4] upgrading pip"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "[bootstrap 3/4] installing $(TORCH_SPEC) (the CPU wheel is about 200 MB: a minute or more)"
	$(BIN)/python -m pip install --quiet --progress-bar off $(TORCH_SPEC)
	@echo "[bootstrap 4/4] installing policygradex with its test tools and every family's extra (.[test,all]: gymnasium, box2d, highway-env, metaworld, mujoco, stable-baselines3, cvxpy, ...)"
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[test,all]"
	@echo "[bootstrap] done; later runs skip these steps (delete $(VENV) to start over)"
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
