"""Whole process: ``gradprobe run`` at (20, 64), plain and residual, against the blog's loop
at the same size, each a fresh Python process (imports included), ``make perf``.

2000 seeds with benchmarks enabled; a few seeds as a smoke test under ``make test``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from timing import TABLE

CONFIG = """name = "perf-20x64"
[model]
depth = 20
width = 64
[sweep]
seeds = {seeds}
residual = [false, true]
"""
NAIVE = """
from gradprobe.bench.models.reference import naive_measure
from gradprobe.bench.plan.config import DataConfig, ModelConfig
for residual in (False, True):
    naive_measure(ModelConfig(depth=20, width=64, residual=residual), DataConfig(),
                  range({seeds}))
"""
GRADPROBE = Path(sys.executable).with_name("gradprobe")


def _seeds(benchmark) -> int:
    return 8 if benchmark.disabled else 2000


def _record(benchmark, kind: str, seeds: int) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        TABLE.whole[kind] = stats.stats.median
        benchmark.extra_info.update(kind=f"whole_{kind}", seeds=seeds,
                                    seconds=stats.stats.median)


def test_whole_run_gradprobe(benchmark, tmp_path):
    seeds = _seeds(benchmark)
    config = tmp_path / "perf.toml"
    config.write_text(CONFIG.format(seeds=seeds))

    def run() -> None:
        subprocess.run([str(GRADPROBE), "run", str(config), "--out", str(tmp_path / "run"),
                        "--force", "--no-progress"], check=True, capture_output=True)

    benchmark.pedantic(run, rounds=1 if benchmark.disabled else 3, iterations=1)
    _record(benchmark, "gradprobe", seeds)


def test_whole_run_naive(benchmark):
    seeds = _seeds(benchmark)

    def run() -> None:
        subprocess.run([sys.executable, "-c", NAIVE.format(seeds=seeds)], check=True,
                       capture_output=True)

    benchmark.pedantic(run, rounds=1 if benchmark.disabled else 3, iterations=1)
    _record(benchmark, "naive", seeds)
