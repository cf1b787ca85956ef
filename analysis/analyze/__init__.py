"""``gradprobe analyze RUN_DIR``: records in, tidy statistics tables out.

Writes ``<run>/analysis/``:

* ``summary.parquet``: per cell, parameter and metric (:mod:`gradprobe.analysis.stats.summary`)
* ``effects.parquet``: paired residual/plain ratios (:mod:`gradprobe.analysis.stats.effects`)
* ``trends.parquet``: per-layer slopes against depth (:mod:`gradprobe.analysis.stats.trends`), with
  the mean-field prediction where it applies (:mod:`gradprobe.analysis.stats.theory`)
* ``contrasts.parquet``: first-layer / output-layer ratios (:mod:`gradprobe.analysis.stats.trends`)
* ``devices.parquet``: cross-device agreement (:mod:`gradprobe.analysis.stats.device_agreement`;
  empty for one device)
* ``cost.parquet``: time per seed per device, dtype and variant
  (:mod:`gradprobe.analysis.stats.device_agreement`)
* ``width.parquet``: log-log exponents of activations and gradients against width, the
  coordinate check (:mod:`gradprobe.analysis.stats.width_scaling`; empty unless width is
  swept)
* ``train_curves``, ``train_grads``, ``train_reach``, ``train_tests``, ``train_final``
  ``.parquet``: training statistics (:mod:`gradprobe.analysis.stats.training_stats`; empty without
  ``[train]``)
* ``analysis.json``: ``analysis_version``, the settings (resamples, confidence, alpha,
  bootstrap seed, p-value adjustment), the run's config hash and cell count, timings, the
  executor (its name, workers, scheduler, and the number of units it ran). Written last.

The whole directory is one unit: it is built in a hidden sibling and swapped in
(:func:`gradprobe.core.atomic_files.replace_directory_atomic`), so a killed re-analysis leaves
the previous analysis whole, never tables of one analysis under another's ``analysis.json``.

The analysis streams: it never holds the run's records. The run's cells are planned into
units read on their own (:mod:`gradprobe.analysis.analyze.work_plan`: a cell, a
plain/residual pair, cells differing only in depth, width or device), each unit is analysed
where the executor puts it (:mod:`gradprobe.analysis.analyze.unit_work`: in this process,
worker processes or Dask, as ``gradprobe run``), and the tables are assembled from the units'
rows (:mod:`gradprobe.analysis.analyze.assembly`). The training tables ride on the cell
and pair units: each reads its cells' training files only
(:mod:`gradprobe.analysis.analyze.training_work`). Memory is bounded by the largest unit,
not by the run; the tables equal those of one pivot of all records (tests/test_assembly.py,
tests/test_training_work.py).

Randomness: each unit's tables draw from their own Generator, seeded from the bootstrap seed,
the table and the unit's cell ids, so re-analysing a run reproduces every interval exactly
whatever the executor and the order the units finish in. (The default intervals are
closed-form t intervals and draw nothing; the Generators matter for bootstrap methods.)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gradprobe.analysis.analyze.assembly import SeedUnion, assemble
from gradprobe.analysis.analyze.training_work import assemble_training, training_payload
from gradprobe.analysis.analyze.unit_work import analyse_unit, unit_payload
from gradprobe.analysis.analyze.work_plan import CellFile, plan_units
from gradprobe.analysis.stats.device_agreement import cost_table
from gradprobe.analysis.stats.effects import ALPHA
from gradprobe.analysis.stats.estimators import CONFIDENCE, DEFAULT_RESAMPLES, check_resamples
from gradprobe.analysis.stats.training_stats import TABLES as TRAIN_TABLES
from gradprobe.bench.execute.executors import check_options, open_executor
from gradprobe.bench.store.manifest import Manifest, read_manifest, utc_now
from gradprobe.bench.store.run_dir import ANALYSIS_DIR
from gradprobe.core.atomic_files import (
    replace_directory_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from gradprobe.core.documents import read_versioned_json
from gradprobe.core.errors import UserError

# 4: paired ratios (effects, contrasts, train_final) are the median seed's, no longer the
# mean of per-seed log ratios; an older analysis is stale (is_stale) and redone by `report`.
# 5: means' intervals (summary, trends, width, training) are Hall's skewness-corrected t.
ANALYSIS_VERSION = 5
TABLES = ("summary", "effects", "trends", "contrasts", "devices", "cost", *TRAIN_TABLES,
          "width")
# Tables added after version 1 (devices, cost), 2 (training) and during 3 (width): an
# older analysis reads them as empty.
OPTIONAL_TABLES = ("devices", "cost", *TRAIN_TABLES, "width")


@dataclass(frozen=True)
class AnalysisSettings:
    n_resamples: int = DEFAULT_RESAMPLES  # bootstrap resamples per interval
    confidence: float = CONFIDENCE
    alpha: float = ALPHA  # false discovery rate for "significant"
    seed: int = 0  # bootstrap generator seed
    adjust: str = "bh"  # Benjamini-Hochberg across each family of tests

    def __post_init__(self) -> None:
        check_resamples(self.n_resamples)
        if not 0 < self.alpha < 1:
            raise UserError(f"alpha = {self.alpha}: must be between 0 and 1")
        if not 0 < self.confidence < 1:
            raise UserError(f"confidence = {self.confidence}: must be between 0 and 1")


@dataclass(frozen=True)
class Analysis:
    """The tables of an analysed run, plus its ``analysis.json`` metadata."""

    run_dir: Path
    summary: pd.DataFrame
    effects: pd.DataFrame
    trends: pd.DataFrame
    contrasts: pd.DataFrame
    meta: dict
    devices: pd.DataFrame = field(default_factory=pd.DataFrame)
    cost: pd.DataFrame = field(default_factory=pd.DataFrame)
    width: pd.DataFrame = field(default_factory=pd.DataFrame)
    train_curves: pd.DataFrame = field(default_factory=pd.DataFrame)
    train_grads: pd.DataFrame = field(default_factory=pd.DataFrame)
    train_reach: pd.DataFrame = field(default_factory=pd.DataFrame)
    train_tests: pd.DataFrame = field(default_factory=pd.DataFrame)
    train_final: pd.DataFrame = field(default_factory=pd.DataFrame)


def analyze_run(run_dir: str | Path, *, settings: AnalysisSettings = AnalysisSettings(),
                executor: str = "local", workers: int | None = None,
                scheduler: str | None = None) -> Analysis:
    """Compute every table for a run and write them under ``<run>/analysis/``.

    ``executor`` is ``local`` (this process, one unit after another), ``processes``
    (``workers`` processes, default one per core) or ``dask`` (``scheduler``, or a local
    cluster), as for :func:`gradprobe.bench.execute.runner.run_sweep`."""
    run_dir = Path(run_dir)
    started = time.perf_counter()
    check_options(executor, workers, scheduler)
    manifest = read_manifest(run_dir)
    cells, units = plan_units(run_dir, manifest)
    training = training_payload(run_dir, manifest.experiment.report.target_loss)
    payloads = [unit_payload(u.kind, list(u.cells), asdict(settings), training)
                for u in units]
    seeds = SeedUnion()
    with open_executor(executor, workers, scheduler) as started_executor:
        results = started_executor.map_in_order(analyse_unit, payloads, on_result=seeds.add)
        where = started_executor.manifest_entry()
    tables = assemble(results, seeds.seeds, settings.alpha)
    tables["cost"] = cost_table(manifest)
    tables = {name: tables[name] for name in ("summary", "effects", "trends", "contrasts",
                                              "devices", "cost", "width")}
    done = completeness(manifest, cells)
    tables.update(assemble_training(results, settings.alpha))
    meta = {
        "analysis_version": ANALYSIS_VERSION,
        "created_at": utc_now(),
        "settings": asdict(settings),
        "run": {"config_sha256": manifest.config.sha256,
                "cells": len(manifest.cells), "seeds": len(seeds.seeds),
                **done},
        "rows": {name: len(frame) for name, frame in tables.items()},
        "seconds": round(time.perf_counter() - started, 3),
        "executor": {**where, "units": len(units)},
    }
    replace_directory_atomic(run_dir / ANALYSIS_DIR, lambda tmp: _write_tables(tmp, tables, meta))
    return Analysis(run_dir, meta=meta, **tables)


def _write_tables(out: Path, tables: dict[str, pd.DataFrame], meta: dict) -> None:
    """Every table, then ``analysis.json``, into the (temporary) directory ``out``."""
    for name, frame in tables.items():
        write_parquet_atomic(out / f"{name}.parquet", frame)
    write_json_atomic(out / "analysis.json", meta)


def completeness(manifest: Manifest, cells: list[CellFile]) -> dict[str, Any]:
    """How much of the planned sweep has records: ``status`` (the manifest's: ``complete``,
    ``running`` or ``interrupted``), ``cells_found``, ``complete`` (every planned cell has
    records and the run finished). An incomplete run is analysed, and says so everywhere.
    ``cells`` are the cell files with records (:func:`work_plan.plan_units`)."""
    planned = set(manifest.cell_ids)
    found = len(planned & {c.cell_id for c in cells})
    status = manifest.status
    return {"status": status, "cells_found": found,
            "complete": status == "complete" and found == len(planned)}


def incomplete_note(run_dir: Path, meta: dict) -> str | None:
    """One line for users when the analysed run is incomplete, else None."""
    run = meta.get("run", {})
    if run.get("complete", True):
        return None
    return (f"{run_dir}: incomplete run: {run['cells_found']} of {run['cells']} cells have "
            f"records (status {run['status']}); the statistics cover those only. Finish it "
            f"with `gradprobe run <its config> --out {run_dir}`")


def is_stale(run_dir: Path, meta: dict, manifest: Manifest,
             settings: AnalysisSettings | None = None) -> bool:
    """Whether ``meta`` no longer describes the analysis wanted: ``settings`` are given and
    differ from those it was computed with, it is of an older :data:`ANALYSIS_VERSION`
    (whose paired ratios meant something else), another config was forced into the
    directory, or the run was resumed or finished (its status, or its number of record
    files, differs from what the analysis saw)."""
    if settings is not None and meta.get("settings") != asdict(settings):
        return True
    if meta.get("analysis_version", ANALYSIS_VERSION) < ANALYSIS_VERSION:
        return True
    seen = meta.get("run", {})
    if seen.get("config_sha256") != manifest.config.sha256:
        return True
    if "cells_found" not in seen:  # analysed before completeness was recorded
        return False
    files = len(list((run_dir / "records").glob("cell-*.parquet")))
    return seen["status"] != manifest.status or seen["cells_found"] != files


def load_analysis(run_dir: str | Path) -> Analysis:
    """Read an analysed run; UserError if it has not been analysed or is from a newer
    gradprobe."""

    run_dir = Path(run_dir)
    meta_path = run_dir / ANALYSIS_DIR / "analysis.json"
    if not meta_path.is_file():
        raise UserError(f"{run_dir}: not analysed yet; run `gradprobe analyze {run_dir}`")
    meta = read_versioned_json(meta_path, key="analysis_version", current=ANALYSIS_VERSION,
                               what="analysis", fix=f"run `gradprobe analyze {run_dir}` again")
    tables = {}
    for name in TABLES:
        path = run_dir / ANALYSIS_DIR / f"{name}.parquet"
        if name in OPTIONAL_TABLES and not path.exists():
            tables[name] = pd.DataFrame()
            continue
        try:
            tables[name] = pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: unreadable ({err}); re-run `gradprobe analyze "
                            f"{run_dir}`") from None
    return Analysis(run_dir, meta=meta, **tables)
