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
REPORTS    ?= reports
SITE       ?= site
# Regression gate: the smoke sweep against the committed baseline reports/baselines/smoke.
BASELINE_CONFIG ?= smoke
BASELINE_NAME   ?= smoke
CHECK_DIR       ?= reports/check-regression
BASE            ?= reports/baselines/$(BASELINE_NAME)
RUN             ?= $(CHECK_DIR)
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.gradprobe-installed

.PHONY: bench test lint perf perf-loaded clean setup browser publish baseline compare check-regression calibrate

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
test: $(STAMP) browser check-regression
	$(BIN)/pytest -q

# Benchmarks: pytest-benchmark saves JSON under .benchmarks/. Compare with the last saved run
# and fail on a slowdown with e.g.
#   make perf PERF_ARGS='--benchmark-compare --benchmark-compare-fail=median:20%'
perf: $(STAMP)
	$(BIN)/pytest tests/perf -q --benchmark-enable --benchmark-autosave \
		--benchmark-columns=median,iqr,rounds --benchmark-sort=name $(PERF_ARGS)

# The speed suite alone, then beside a competing torch process that it starts itself
# (tests/perf/competitor.py: 256x256 matmuls on torch's default thread pool, like a training
# job or another CI job), and both engine/naive tables side by side.
PERF_JSON ?= .benchmarks/load
PERF_FLAGS := -q --benchmark-enable --benchmark-columns=median,iqr,rounds --benchmark-sort=name
perf-loaded: $(STAMP)
	mkdir -p $(PERF_JSON)
	$(BIN)/pytest tests/perf $(PERF_FLAGS) --benchmark-json=$(PERF_JSON)/idle.json $(PERF_ARGS)
	GRADPROBE_PERF_COMPETE=1 $(BIN)/pytest tests/perf $(PERF_FLAGS) \
		--benchmark-json=$(PERF_JSON)/loaded.json $(PERF_ARGS)
	$(BIN)/python tests/perf/side_by_side.py $(PERF_JSON)/idle.json $(PERF_JSON)/loaded.json

# tests/test_browser.py opens the report in headless Chromium. Where none is on PATH, install
# Debian's `chromium` when we can (root and apt-get); otherwise, or if that fails, the
# browser tests skip and say why. Nothing to do, and instant, once a Chromium is present.
browser:
	@if [ -n "$$GRADPROBE_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 \
	    || command -v chromium-browser >/dev/null 2>&1 \
	    || command -v google-chrome >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	        || echo "warning: could not install chromium; the browser tests will skip"; \
	else \
	    echo "note: no Chromium, and installing one needs root and apt-get: the browser tests will skip"; \
	fi

# A static site of every analysed run under $(REPORTS): open $(SITE)/index.html, or serve it
# with `python -m http.server -d $(SITE)`, or push it to GitHub Pages.
publish: $(STAMP)
	$(BIN)/gradprobe publish --reports $(REPORTS) --out $(SITE)

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
	$(BIN)/ruff check src bench analysis tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
