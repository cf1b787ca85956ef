"""What a comparison must find on both sides: no stray records files, no missing cells.

``gradprobe compare`` judges the cells and parameters both sides have. A run that lost cell
files (a deleted or never-written ``records/cell-*.parquet``) has fewer cells to judge, so
without these checks it would pass more easily the less it contains. Two rules:

* *Stray files are refused* (:func:`check_stray_files`, a one-line ``UserError``, exit 2):
  in a baseline every file under ``records/`` must be listed in ``baseline.json``; in a run
  directory every ``records/cell-*.parquet`` must belong to a cell of ``manifest.json``.
  Records that no plan accounts for would otherwise be compared as if they belonged there.
* *Missing is a verdict* (:func:`missing_tests`): every BASE cell (of its manifest, with or
  without records) and every parameter of a BASE cell needs a counterpart in RUN; each
  one without gets a test row with verdict ``missing``, which fails the gate (exit 1).
  Cells and parameters found in RUN only are listed, not judged: a run may add coverage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from gradprobe.analysis.compare.verdicts import MISSING
from gradprobe.bench.store.manifest import CellEntry, Manifest
from gradprobe.bench.store.records import RECORDS_DIR, record_files
from gradprobe.core.errors import UserError


def check_stray_files(path: Path, manifest: Manifest,
                      baseline: dict[str, Any] | None) -> None:
    """UserError naming the first records file that neither ``baseline.json`` (for a
    baseline) nor the manifest's ``cells`` (for a run directory) accounts for."""
    records = Path(path) / RECORDS_DIR
    if baseline is not None:
        listed = {Path(name).name for name in baseline.get("files", {})}
        found = sorted(p for p in records.iterdir() if p.is_file()) if records.is_dir() else []
        what = f"not listed in baseline.json of baseline {baseline.get('name')!r}"
        fix = "remove it, or save the baseline again with `gradprobe baseline save --force`"
    else:
        listed = {f"cell-{cell_id}.parquet" for cell_id in manifest.cell_ids}
        found = record_files(path)
        what = "a records file of no cell in manifest.json"
        fix = "remove it (records of another run?) or rerun into a fresh directory"
    for file in found:
        if file.name not in listed:
            raise UserError(f"{file}: {what}; {fix}")


def unrecorded_cells(manifest: Manifest, recorded: set[str]) -> list[CellEntry]:
    """Cells of the manifest whose id is not among the ``recorded`` cell ids."""
    present = set(recorded)
    return [c for c in manifest.cells if c.cell_id not in present]


def missing_tests(base_keys: pd.DataFrame, run_keys: pd.DataFrame, pairs: pd.DataFrame,
                  key: list[str], unrecorded: list[CellEntry],
                  metric: str) -> pd.DataFrame:
    """One ``missing`` test row per BASE (cell, parameter) without a RUN counterpart, and
    one per BASE manifest cell without records (``param`` empty).

    ``base_keys``/``run_keys``: :class:`gradprobe.analysis.stats.series.Series` ``keys``
    (``cell_id``, axis
    columns, ``param``, ``layer``, ``kind``); ``pairs``: matched cells (``cell_base``,
    ``cell_run`` and the ``key`` axes). Returns the columns of
    :attr:`gradprobe.analysis.compare.comparison.Comparison.tests` that apply, with ``metric`` as
    the metric.
    """
    matched = base_keys.merge(pairs, left_on="cell_id", right_on="cell_base", how="left",
                              suffixes=("", "_pair"))
    have = run_keys[["cell_id", "param"]].rename(columns={"cell_id": "cell_run"})
    have = have.assign(found=True)
    matched = matched.merge(have, on=["cell_run", "param"], how="left")
    lost = matched[matched["found"].isna()]
    rows = pd.DataFrame({"cell_base": lost["cell_id"], "cell_run": lost["cell_run"],
                         **{k: lost[k] for k in key},
                         "param": lost["param"], "layer": lost["layer"], "kind": lost["kind"]})
    rows["reason"] = ["BASE cell has no matching cell in RUN" if pd.isna(c) else
                      "parameter has no counterpart in the matched RUN cell"
                      for c in lost["cell_run"]]
    cells = pd.DataFrame([{"cell_base": c.cell_id, "cell_run": None,
                           **{k: c.axes.get(k) for k in key}, "param": "",
                           "reason": "cell of BASE's manifest.json without records in BASE"}
                          for c in unrecorded])
    out = pd.concat([f for f in (rows, cells) if len(f)], ignore_index=True) \
        if len(rows) or len(cells) else rows
    return out.assign(metric=metric, test="presence", pairing="", verdict=MISSING,
                      gate=True).reset_index(drop=True)
