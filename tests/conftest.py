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


TRAIN_SMOKE = """name = "train-smoke"
description = "Tiny training sweep for tests."
[model]
width = 8
[train]
steps = 30
optimizer = "adam"
lr = 0.02
samples = 16
log_every = 10
[sweep]
seeds = 10
depth = [3, 6]
residual = [false, true]
[report]
headline = { depth = 3 }
target_loss = [0.5, 0.2]
"""


@pytest.fixture(scope="session")
def train_run(tmp_path_factory) -> Path:
    """A tiny sweep with a [train] section, run and analysed (few resamples)."""
    from analysis.analyze import AnalysisSettings, analyze_run
    from bench.loader import load_config
    from bench.runner import run_sweep

    root = tmp_path_factory.mktemp("train")
    run_dir = root / "run"
    run_sweep(load_config(write_config(root, TRAIN_SMOKE, "train.toml")), out=run_dir,
              progress=False)
    analyze_run(run_dir, settings=AnalysisSettings(n_resamples=499))
    return run_dir
