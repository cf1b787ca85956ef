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
# Regression gate: the smoke sweep against the committed baseline reports/baselines/smoke.
BASELINE_CONFIG ?= smoke
BASELINE_NAME   ?= smoke
CHECK_DIR       ?= reports/check-regression
BASE            ?= reports/baselines/$(BASELINE_NAME)
RUN             ?= $(CHECK_DIR)
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.gradprobe-installed

.PHONY: bench test lint perf clean setup baseline compare check-regression calibrate

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/gradprobe bench $(CONFIG)

# The regression gate runs first so that pytest's summary is the last line CI reads.
test: $(STAMP) check-regression
	$(BIN)/python -m pytest -q

# Run the smoke sweep afresh (a stale directory would be resumed, not rerun) and compare it
# with the committed baseline: exit 1 on a regression. compare.md goes to CI job summaries
# through $$GITHUB_STEP_SUMMARY when that is set.
check-regression: $(STAMP)
	rm -rf $(CHECK_DIR)
	$(BIN)/gradprobe run $(BASELINE_CONFIG) --out $(CHECK_DIR) --no-progress
	$(BIN)/gradprobe compare $(BASE) $(CHECK_DIR)

# Re-make the committed baseline (after an intended change of gradient behaviour).
baseline: $(STAMP)
	rm -rf reports/baseline-run
	$(BIN)/gradprobe run $(BASELINE_CONFIG) --out reports/baseline-run --no-progress
	$(BIN)/gradprobe baseline save reports/baseline-run --name $(BASELINE_NAME) --force

# make compare BASE=reports/baselines/smoke RUN=reports/<run directory>
compare: $(STAMP)
	$(BIN)/gradprobe compare $(BASE) $(RUN)

calibrate: $(STAMP)
	$(BIN)/gradprobe calibrate $(BASELINE_CONFIG) --out reports/calibration

lint: $(STAMP)
	$(BIN)/ruff check bench analysis tests
	$(BIN)/ruff format --check bench analysis tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
