# gradprobe: `make bench` and `make test` do all set-up on a fresh machine.
#
# TORCH_SPEC picks the PyTorch build. The default is pinned so that baselines stay comparable;
# override it for another version or a CUDA/CPU-specific build, e.g.
#   make bench TORCH_SPEC='torch==2.15.0'
#   make bench TORCH_SPEC='torch --index-url https://download.pytorch.org/whl/cpu'
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
CONFIG     ?= bench/configs/default.toml
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.gradprobe-installed

.PHONY: bench test lint perf clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/gradprobe bench $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Benchmarks: pytest-benchmark saves JSON under .benchmarks/. Compare with the last saved run
# and fail on a slowdown with e.g.
#   make perf PERF_ARGS='--benchmark-compare --benchmark-compare-fail=median:20%'
perf: $(STAMP)
	$(BIN)/python -m pytest tests/perf -q --benchmark-enable --benchmark-autosave \
		--benchmark-columns=median,iqr,rounds --benchmark-sort=name $(PERF_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bench analysis tests
	$(BIN)/ruff format --check bench analysis tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
