"""``make bench``: run a config, analyse it, write its report and ``reports/latest/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.analyze import analyze_run
from analysis.report import headline_for, write_report
from bench.atomic_files import copy_file_atomic, ensure_directory
from bench.loader import config_with_overrides, load_config
from bench.runner import default_run_dir, run_sweep


@dataclass(frozen=True)
class BenchResult:
    run_dir: Path
    report: Path
    latest: Path
    headline_text: str


def bench_pipeline(*, config_path: str | Path = "default", root: Path = Path("reports"),
                   seeds: int | None = None, progress: bool = True) -> BenchResult:
    """Run ``config_path`` into ``root/<name>-<time>``, analyse, report, and copy the report
    to ``root/latest/index.html``. Returns the paths and the headline table as text."""
    config = config_with_overrides(load_config(config_path), seeds=seeds)
    run_dir = default_run_dir(config, root)
    run_sweep(config, out=run_dir, progress=progress,
              overrides={"seeds": seeds} if seeds else {})
    analysis = analyze_run(run_dir)
    report = write_report(run_dir, analysis=analysis)
    latest = root / "latest" / "index.html"
    ensure_directory(latest.parent)
    copy_file_atomic(report, latest)
    return BenchResult(run_dir, report, latest, headline_for(analysis).text)
