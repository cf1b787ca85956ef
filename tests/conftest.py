"""Shared fixtures: a small run directory made once per session through the real pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "bench" / "configs" / "smoke.toml"


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """``smoke.toml`` run into a temporary directory (records + manifest, not analysed)."""
    from bench.loader import load_config
    from bench.runner import run_sweep

    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    run_sweep(load_config(SMOKE), out=run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="session")
def smoke_analysis(smoke_run):
    """The smoke run analysed with few resamples (fast, still a real bootstrap)."""
    from analysis.analyze import AnalysisSettings, analyze_run

    return analyze_run(smoke_run, settings=AnalysisSettings(n_resamples=499))


def write_config(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


SMOKE_TEXT = SMOKE.read_text(encoding="utf-8")


def smoke_text(*, model: str = "", sweep_residual: bool = True, seeds: int | None = None,
               depth: str | None = None, extra: str = "") -> str:
    """The smoke config with edits: extra ``[model]`` lines, the residual axis removed,
    another seed count or depth axis, extra sections."""
    text = SMOKE_TEXT
    if model:
        key = model.split("=")[0].strip()
        lines = [line for line in text.splitlines() if not line.startswith(f"{key} =")]
        text = "\n".join(lines).replace("[model]", f"[model]\n{model}") + "\n"
    if not sweep_residual:
        text = text.replace("residual = [false, true]\n", "")
    if seeds is not None:
        text = text.replace("seeds = 16", f"seeds = {seeds}")
    if depth is not None:
        text = text.replace("depth = [2, 3, 4]", f"depth = {depth}")
    return text + extra


def run_text(directory: Path, text: str, name: str = "variant.toml") -> Path:
    """Run config ``text`` into ``directory`` (in-process, no progress bar)."""
    from bench.loader import parse_config
    from bench.runner import run_sweep

    run_sweep(parse_config(text, source=name), out=directory, progress=False)
    return directory


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
def wide_smoke(tmp_path_factory) -> Path:
    """The smoke config with 640 seeds: 20 disjoint pairs of 16-seed sets for A/A tests."""
    return run_text(tmp_path_factory.mktemp("wide") / "run", smoke_text(seeds=640))
