"""Which cells the analysis reads together: the units of work, planned from file footers.

Every statistic of gradprobe is a function of a few cells' records: a cell's own summary, a
plain/residual pair's paired effects, the cells that differ only in depth (depth trends),
only in width (the coordinate check) or only in device (cross-device agreement). The plan
reads each cell file's version, its ``gradprobe.cell`` metadata and one row of its axis
columns (the axes are constant within a cell), never its records, and groups the cells into
units; each unit is then analysed on its own (:mod:`gradprobe.analysis.analyze.unit_work`),
so memory is bounded by the largest unit, not by the run.

Cells are ranked in the order :func:`gradprobe.analysis.stats.series.build_series` puts their
rows in (sorted by every axis column), so the assembled tables come out in the order the
whole-run analysis gave them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gradprobe.bench.plan.config import LEGACY_MODELS, current_factory_name
from gradprobe.bench.store.manifest import Manifest
from gradprobe.bench.store.records import (
    AXIS_COLUMNS,
    AXIS_FIELDS,
    RECORDS_DIR,
    SCHEMA_VERSION,
    check_cell_file,
    planned_cells,
    read_table,
    readable_schema_version,
    record_files,
)
from gradprobe.core.errors import UserError

UNIT_KINDS = ("cells", "depth", "width", "devices")


@dataclass(frozen=True)
class CellFile:
    """One cell's records file: ``cell_id``, ``path``, ``axes`` (``{axis column: value}``)
    and ``rank`` (its position in the analysis tables' order)."""

    cell_id: str
    path: str
    axes: dict[str, Any]
    rank: int

    def to_json(self) -> dict[str, Any]:
        return {"cell_id": self.cell_id, "path": self.path, "axes": self.axes,
                "rank": self.rank}


@dataclass(frozen=True)
class Unit:
    """Cells analysed together: ``kind`` is ``cells`` (one cell, or a plain/residual pair:
    summaries, contrasts, paired effects), ``depth``, ``width`` or ``devices`` (cells that
    differ only in that axis: trends, width exponents, device agreement)."""

    kind: str
    cells: tuple[CellFile, ...]


def plan_units(run_dir: Path, manifest: Manifest) -> tuple[list[CellFile], list[Unit]]:
    """The run's cell files in rank order, and the units of work over them.

    UserError, before anything is computed, for a run without records, a file this code
    cannot read, or a file that does not belong to the run (as
    :func:`gradprobe.bench.store.records.read_records` would)."""
    cells = cell_files(run_dir, manifest)
    units = [Unit("cells", pair) for pair in _pairs(cells)]
    for axis, kind in (("depth", "depth"), ("width", "width"), ("device", "devices")):
        units += [Unit(kind, group) for group in differing_only_in(cells, axis)
                  if kind != "devices" or _devices(cells) > 1]
    return cells, units


def cell_files(run_dir: Path, manifest: Manifest) -> list[CellFile]:
    """The run's cell files with at least one record, in rank order, from their footers.

    UserError for a run without records, a file this code cannot read, or a file that does
    not belong to the run (as :func:`gradprobe.bench.store.records.read_records` would)."""
    files = record_files(run_dir)
    if not files:
        raise UserError(f"{run_dir}: no records found in {run_dir / RECORDS_DIR}; run "
                        "`gradprobe run CONFIG --out DIR` first")
    plan = planned_cells(manifest)
    found = []
    for path in files:
        axes = _cell_axes(path)
        check_cell_file(path, plan)
        if axes is not None:
            found.append((path, axes))
    return _ranked(found)


def _cell_axes(path: Path) -> dict[str, Any] | None:
    """The axis values of one cell file (migrated, legacy factory names updated), from its
    first row; None for a file without rows."""
    if readable_schema_version(path) == SCHEMA_VERSION:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1, columns=list(AXIS_COLUMNS))
        first = next(batches, None)
        row = first.to_pylist()[0] if first is not None and first.num_rows else None
    else:
        table = read_table(path, list(AXIS_COLUMNS))
        row = table.slice(0, 1).to_pylist()[0] if table.num_rows else None
    if row is not None and row["factory"].startswith(LEGACY_MODELS):
        row["factory"] = current_factory_name(row["factory"])
    return row


def _ranked(found: list[tuple[Path, dict[str, Any]]]) -> list[CellFile]:
    """Cells sorted as ``build_series`` sorts its keys: by every axis column, stably."""
    frame = pa.Table.from_pylist([axes for _, axes in found],
                                 schema=pa.schema(AXIS_FIELDS)).to_pandas()
    order = frame.sort_values(list(AXIS_COLUMNS), kind="stable").index
    cells = []
    for rank, i in enumerate(order):
        path, axes = found[i]
        cell_id = path.name.removeprefix("cell-").removesuffix(".parquet")
        cells.append(CellFile(cell_id, str(path), axes, rank))
    return cells


def differing_only_in(cells: list[CellFile], axis: str) -> list[tuple[CellFile, ...]]:
    """Groups of two or more cells whose axes are equal except ``axis``, in order of their
    first cell's rank."""
    groups: dict[tuple, list[CellFile]] = defaultdict(list)
    for cell in cells:
        groups[tuple(v for k, v in cell.axes.items() if k != axis)].append(cell)
    return [tuple(g) for g in groups.values() if len(g) > 1]


def _pairs(cells: list[CellFile]) -> list[tuple[CellFile, ...]]:
    """Plain/residual pairs (control first), and every unpaired cell on its own."""
    paired = {}
    for group in differing_only_in(cells, "residual"):
        control = [c for c in group if c.axes["residual"] is False]
        treatment = [c for c in group if c.axes["residual"] is True]
        if len(control) == 1 and len(treatment) == 1:
            paired[control[0].cell_id] = paired[treatment[0].cell_id] = (control[0],
                                                                         treatment[0])
    units = []
    for cell in cells:
        unit = paired.get(cell.cell_id, (cell,))
        if unit[0] is cell:
            units.append(unit)
        elif cell.cell_id not in paired:
            units.append((cell,))
    return units


def _devices(cells: list[CellFile]) -> int:
    return len({c.axes["device"] for c in cells})
