"""Shared fixtures: a small run directory made once per session through the real pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from support import (
    GPT2_SMALL,
    HOSTILE_DESCRIPTION,
    HOSTILE_DIR,
    HOSTILE_NAME,
    SMOKE,
    TRAIN_SMOKE,
    TRANSFORMER_SMALL,
    run_text,
    smoke_text,
    write_config,
)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """``smoke.toml`` run into a temporary directory (records + manifest, not analysed)."""
    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import load_config

    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    run_sweep(load_config(SMOKE), out=run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="session")
def smoke_analysis(smoke_run):
    """The smoke run analysed with few resamples (fast, still a real bootstrap)."""
    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run

    return analyze_run(smoke_run, settings=AnalysisSettings(n_resamples=499))


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium through Playwright, or a skip that says what is missing."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="the Python package playwright is missing: `make test` installs the dev extras "
               "(pip install -e '.[dev]')")
    from browser_support import CHROMIUM_ARGS, find_chromium

    given = os.environ.get("GRADPROBE_CHROMIUM")
    executable = find_chromium()
    if given and executable is None:
        pytest.fail(f"GRADPROBE_CHROMIUM={given} is not an executable file")
    if executable is None:
        pytest.skip("no Chromium found (tried $GRADPROBE_CHROMIUM, chromium, chromium-browser, "
                    "google-chrome); `make test` installs Debian's chromium when run as root "
                    "with apt-get, otherwise install it or set GRADPROBE_CHROMIUM")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory) -> Path:
    """A small analysed and reported run whose config name, description and directory name
    are HTML/JS injection attempts; pages built from it must show them as text."""
    import json
    import re

    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run
    from gradprobe.analysis.report.report_page import write_report
    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import load_config

    text = SMOKE.read_text(encoding="utf-8")
    text = text.replace('name = "smoke"', f"name = {json.dumps(HOSTILE_NAME)}")
    text = re.sub(r"(?m)^description = .*$",
                  lambda _: f"description = {json.dumps(HOSTILE_DESCRIPTION)}", text)
    text = text.replace("seeds = 16", "seeds = 6").replace("depth = [2, 3, 4]", "depth = [2, 3]")
    root = tmp_path_factory.mktemp("hostile")
    config = write_config(root, text, name="hostile.toml")
    run_dir = root / "reports" / HOSTILE_DIR
    run_sweep(load_config(config), out=run_dir, progress=False)
    analysis = analyze_run(run_dir, settings=AnalysisSettings(n_resamples=199))
    write_report(run_dir, analysis=analysis)
    return run_dir


@pytest.fixture(scope="session")
def reports_dir(tmp_path_factory, smoke_analysis, hostile_run) -> Path:
    """A reports directory as `make bench` leaves it: two analysed and reported runs, and
    ``latest/``, which is not a run."""
    import shutil

    from gradprobe.analysis.report.report_page import write_report

    root = tmp_path_factory.mktemp("publish") / "reports"
    shutil.copytree(smoke_analysis.run_dir, root / "smoke-run")
    write_report(root / "smoke-run")
    shutil.copytree(hostile_run, root / HOSTILE_DIR)
    (root / "latest").mkdir()
    (root / "latest" / "index.html").write_text("<p>latest</p>", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def smoke_variants(tmp_path_factory) -> dict[str, Path]:
    """Smoke runs with one planted change each (16 seeds, same seeds as ``smoke_run``)."""
    root = tmp_path_factory.mktemp("variants")
    texts = {
        "gain": smoke_text(model="init_gain = 1.05"),
        "tanh": smoke_text(model='activation = "tanh"'),
        "plain": smoke_text(model="residual = false", sweep_residual=False),
        "residual": smoke_text(model="residual = true", sweep_residual=False),
        "deeper": smoke_text(depth="[3, 4, 5]"),
    }
    return {name: run_text(root / name, text) for name, text in texts.items()}


@pytest.fixture(scope="session")
def transformer_analysis(tmp_path_factory):
    """The transformer preset, small (:data:`support.TRANSFORMER_SMALL`), run and analysed
    with few resamples: a factory model with a swept axis besides depth and residual."""
    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run

    run_dir = run_text(tmp_path_factory.mktemp("transformer") / "run", TRANSFORMER_SMALL,
                       name="transformer-small.toml")
    return analyze_run(run_dir, settings=AnalysisSettings(n_resamples=199))


@pytest.fixture(scope="session")
def gpt2_analysis(tmp_path_factory):
    """Hugging Face GPT-2 (:data:`support.GPT2_SMALL`, needs the models extra), run and
    analysed: a factory whose signature has no ``residual``, swept over depth only."""
    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run

    pytest.importorskip("transformers", reason="needs the models extra: pip install "
                                               "'gradprobe[models]'")
    run_dir = run_text(tmp_path_factory.mktemp("gpt2") / "run", GPT2_SMALL, name="gpt2.toml")
    return analyze_run(run_dir, settings=AnalysisSettings(n_resamples=199))


@pytest.fixture(scope="session")
def wide_smoke(tmp_path_factory) -> Path:
    """The smoke config with 640 seeds: 20 disjoint pairs of 16-seed sets for A/A tests."""
    return run_text(tmp_path_factory.mktemp("wide") / "run", smoke_text(seeds=640))


@pytest.fixture(scope="session")
def train_run(tmp_path_factory) -> Path:
    """A tiny sweep with a [train] section, run and analysed (few resamples)."""
    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run
    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import load_config

    root = tmp_path_factory.mktemp("train")
    run_dir = root / "run"
    run_sweep(load_config(write_config(root, TRAIN_SMOKE, "train.toml")), out=run_dir,
              progress=False)
    analyze_run(run_dir, settings=AnalysisSettings(n_resamples=499))
    return run_dir


@pytest.fixture(scope="session")
def scratch_history(tmp_path_factory):
    """A user's repository (``support.scratch_repo``: 6 commits, the model's init scale
    changes at commit 4) and ``make bench`` run at each commit into ``reports/``: returns
    ``(repo, commits, reports)``. Run in-process, so the factory module is re-imported
    from each checkout by hand (a fresh process per commit would do it by itself)."""
    import sys

    from support import git, scratch_repo

    from gradprobe.bench.models.factory import resolve_factory
    from gradprobe.pipeline import bench_pipeline

    root = tmp_path_factory.mktemp("scratch")
    repo, reports = root / "repo", root / "reports"
    shas = scratch_repo(repo)
    sys.path.insert(0, str(repo))
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        for sha in shas:
            git(repo, "checkout", "--quiet", sha)
            sys.modules.pop("scratchnet", None)
            resolve_factory.cache_clear()
            bench_pipeline(config_path=repo / "scratch.toml", root=reports, progress=False)
    finally:
        git(repo, "checkout", "--quiet", "main")
        sys.path.remove(str(repo))
        sys.modules.pop("scratchnet", None)
        resolve_factory.cache_clear()
        sys.dont_write_bytecode = writes_bytecode
    return repo, shas, reports
