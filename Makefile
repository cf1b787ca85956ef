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
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.gradprobe-installed

.PHONY: bench test lint perf clean setup browser publish

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/gradprobe bench $(CONFIG)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# Benchmarks: pytest-benchmark saves JSON under .benchmarks/. Compare with the last saved run
# and fail on a slowdown with e.g.
#   make perf PERF_ARGS='--benchmark-compare --benchmark-compare-fail=median:20%'
perf: $(STAMP)
	$(BIN)/python -m pytest tests/perf -q --benchmark-enable --benchmark-autosave \
		--benchmark-columns=median,iqr,rounds --benchmark-sort=name $(PERF_ARGS)

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

lint: $(STAMP)
	$(BIN)/ruff check bench analysis tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
