"""``make bench``: run a config, analyse it, compare it with the previous run of the same
config, write its report, append it to the history, and update ``reports/latest/``.

Comparing with the previous run is what makes repeated ``make bench`` calls a record of
gradient behaviour across code and PyTorch versions: the report and the published site show
the verdicts, and ``reports/history/`` the trend. ``make bench`` itself never fails on a
regression; ``make check-regression`` (``gradprobe compare``) is the gate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gradprobe.analysis.analyze import analyze_run
from gradprobe.analysis.report.report_page import headline_for, write_report
from gradprobe.bench.execute.runner import default_run_dir, run_sweep
from gradprobe.bench.plan.loader import config_with_overrides, load_config
from gradprobe.bench.store.manifest import MANIFEST_FILE, read_manifest
from gradprobe.bench.store.run_dir import start_order
from gradprobe.core.atomic_files import copy_file_atomic, ensure_directory
from gradprobe.core.errors import UserError

HISTORY = "history"


@dataclass(frozen=True)
class BenchResult:
    run_dir: Path
    report: Path
    latest: Path
    headline_text: str
    compared_with: Path | None = None  # the previous run of the config, if there was one
    verdicts: dict[str, int] | None = None  # compare's verdict counts against it
    history: Path | None = None  # the history file written for this run


def bench_pipeline(*, config_path: str | Path = "default", root: Path = Path("reports"),
                   seeds: int | None = None, progress: bool = True,
                   compare: bool = True) -> BenchResult:
    """Run ``config_path`` into ``root/<name>-<time>``, analyse it, compare it with the
    newest earlier complete run of the same config under ``root`` (``compare.json`` in the
    run directory), write the report, append the run to ``root/history/`` and copy the
    report to ``root/latest/<config name>/index.html`` (one per config: a run of another
    config does not replace it)."""
    from gradprobe.analysis.compare.compare_output import compare_dirs
    from gradprobe.analysis.history.run_history import append_run

    config = config_with_overrides(load_config(config_path), seeds=seeds)
    run_dir = default_run_dir(config, root)
    previous = previous_run(root, config.name, exclude=run_dir) if compare else None
    run_sweep(config, out=run_dir, progress=progress,
              overrides={"seeds": seeds} if seeds else {})
    analysis = analyze_run(run_dir)
    verdicts = compare_dirs(previous, run_dir)[0].counts() if previous else None
    report = write_report(run_dir, analysis=analysis)
    history, _ = append_run(run_dir, root=root / HISTORY)
    latest = root / "latest" / latest_name(config.name) / "index.html"
    ensure_directory(latest.parent)
    copy_file_atomic(report, latest)
    return BenchResult(run_dir, report, latest, headline_for(analysis).text, previous,
                       verdicts, history)


def latest_name(config_name: str) -> str:
    """The folder of ``config_name`` under ``latest/``: one path segment, whatever the
    name holds."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", config_name).strip(".") or "_"


def _complete_runs(root: Path, name: str) -> list[tuple[tuple, Path]]:
    """``(start_order key, run directory)`` of every complete run of config ``name``
    directly under ``root``; unreadable directories are passed over."""
    found = []
    for path in root.glob(f"*/{MANIFEST_FILE}") if root.is_dir() else ():
        try:
            manifest = read_manifest(path.parent)
            if manifest.status == "complete" and manifest.config.name == name:
                found.append((start_order(manifest.started_at, path.parent), path.parent))
        except UserError:
            continue
    return found


def previous_run(root: Path, name: str, *, exclude: Path) -> Path | None:
    """The most recently started complete run of config ``name`` directly under ``root``
    (not ``exclude``), or None. Unreadable directories are passed over."""
    found = [(key, path) for key, path in _complete_runs(root, name) if path != exclude]
    return max(found)[1] if found else None


def previous_of(run_dir: str | Path) -> Path:
    """``gradprobe compare --previous RUN``: the most recently started complete run of
    RUN's config, beside RUN (in its parent directory), that started before RUN."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    own = start_order(manifest.started_at, run_dir)
    found = [(key, path) for key, path in _complete_runs(run_dir.parent, manifest.config.name)
             if path.resolve() != run_dir.resolve() and key < own]
    if not found:
        raise UserError(f"--previous {run_dir}: no complete run of config "
                        f"{manifest.config.name!r} started before it in {run_dir.parent}; "
                        "name the base directory instead")
    return max(found)[1]


def baseline_path(name: str, root: str | Path = Path("reports") / "baselines") -> Path:
    """``gradprobe compare --baseline NAME``: the saved baseline ``root/NAME``."""
    path = Path(root) / name
    if not (path / MANIFEST_FILE).is_file():
        saved = sorted(p.parent.name for p in Path(root).glob(f"*/{MANIFEST_FILE}"))
        raise UserError(f"--baseline {name}: no baseline {path}; saved ones: "
                        f"{', '.join(saved) or 'none'} (save one with `gradprobe baseline "
                        "save RUN_DIR --name NAME`)")
    return path
