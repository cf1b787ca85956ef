"""The two sides of a comparison: a run directory or a saved baseline, read the same way.

A baseline (:mod:`gradprobe.analysis.compare.baseline`) is a run directory's ``manifest.json``,
``config.toml``
and ``records/`` copied elsewhere, plus a ``baseline.json``; both kinds are read here into a
:class:`Side`, so ``gradprobe compare`` takes either on either side.

Loading a side reads its manifest, its cell files' footers and their ``seed`` columns, never
their records: the comparison reads one cell at a time (:meth:`Side.cell_series`, only the
columns its tests need), so its memory is bounded by a pair of cells, not by the runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from gradprobe.analysis.analyze.unit_work import read_cell
from gradprobe.analysis.analyze.work_plan import CellFile, cell_files
from gradprobe.analysis.compare.presence import check_stray_files
from gradprobe.analysis.stats.series import Series, build_series, on_seeds
from gradprobe.bench.plan.sweep import ExperimentConfig
from gradprobe.bench.store.manifest import Manifest, read_manifest
from gradprobe.bench.store.records import AXIS_COLUMNS, AXIS_FIELDS, read_records, read_table
from gradprobe.core.documents import read_versioned_json
from gradprobe.core.errors import UserError

BASELINE_FILE = "baseline.json"
BASELINE_VERSION = 1


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its cells are read one at a time (:meth:`cell_series`).

    ``cells``: the cell files with records (:class:`~gradprobe.analysis.analyze.work_plan.
    CellFile`, rank order); ``file_seeds``: ``(num_seeds,)`` sorted seeds found in them.
    ``records``: None, or the records DataFrame of :mod:`gradprobe.bench.store.records` (one
    row per cell, seed and parameter) held in memory (:meth:`in_memory`: the A/A calibration
    splits and edits them); cells, seeds and series then come from it instead of the files.
    ``config``: the run's config as parsed from its manifest.
    """

    label: str  # "BASE" or "RUN", for messages
    path: str  # as the user gave it
    kind: str  # "run" or "baseline"
    manifest: Manifest
    config: ExperimentConfig
    cells: tuple[CellFile, ...]
    file_seeds: np.ndarray
    records: pd.DataFrame | None = None

    @property
    def seeds(self) -> np.ndarray:
        """The seeds in the records, sorted ``(num_seeds,)`` int64."""
        if self.records is None:
            return self.file_seeds
        return np.sort(self.records["seed"].unique()).astype(np.int64)

    def cell_table(self) -> pd.DataFrame:
        """One row per cell with records: ``cell_id`` and every axis column, in the order
        of the records files (as :func:`cell_table_of` of all records)."""
        if self.records is not None:
            return cell_table_of(self.records)
        frame = pa.Table.from_pylist([c.axes for c in self.cells],
                                     schema=pa.schema(AXIS_FIELDS)).to_pandas()
        frame.insert(0, "cell_id", [c.cell_id for c in self.cells])
        return frame.sort_values("cell_id", kind="stable").reset_index(drop=True)

    def ranked_cell_ids(self) -> list[str]:
        """Cell ids in the order :func:`build_series` puts their rows: by every axis column."""
        table = self.cell_table()
        return table.sort_values(list(AXIS_COLUMNS), kind="stable")["cell_id"].tolist()

    def cell_series(self, cell_id: str, metrics: list[str]) -> Series:
        """One cell's :class:`Series` of ``metrics`` with fingerprints, on the side's
        seeds: equal to its rows of :func:`build_series` of all the side's records."""
        if self.records is None:
            cell = next(c for c in self.cells if c.cell_id == cell_id)
            series = read_cell(cell.to_json(), metrics, fingerprints=True)
        else:
            series = build_series(self.records[self.records["cell_id"] == cell_id], metrics)
        return on_seeds(series, self.seeds)

    def with_seeds(self, seeds) -> Side:
        """The same side restricted to ``seeds`` (A/A calibration splits one run in two)."""
        records = self.in_memory().records
        keep = records["seed"].isin(list(seeds))
        return replace(self, records=records[keep].reset_index(drop=True))

    def in_memory(self) -> Side:
        """The same side with every record read into ``records``."""
        if self.records is not None:
            return self
        return replace(self, records=read_records(self.path))

    def describe(self) -> dict[str, Any]:
        """What a reader needs to know about this side, JSON-ready."""
        env = self.manifest.environment
        git = env.get("git") or {}
        return {
            "label": self.label,
            "path": self.path,
            "kind": self.kind,
            "config": self.config.name,
            "config_sha256": self.manifest.config.sha256,
            "seeds": seed_summary(self.seeds),
            "n_seeds": len(self.seeds),
            "n_cells": len(self.cell_table()),
            "torch": env.get("torch"),
            "gradprobe": env.get("gradprobe"),
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "started_at": self.manifest.started_at,
        }


def cell_table_of(records: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: ``cell_id`` and every axis column, in order of first record."""
    return records.drop_duplicates("cell_id")[["cell_id", *AXIS_COLUMNS]].reset_index(drop=True)


def seed_summary(seeds) -> str:
    """``0..15`` for a contiguous range, else the first few seeds and the count."""
    seeds = sorted(int(s) for s in seeds)
    if not seeds:
        return "none"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    shown = ", ".join(map(str, seeds[:5]))
    return f"{shown}{', ...' if len(seeds) > 5 else ''} ({len(seeds)} seeds)"


def read_baseline_meta(path: str | Path) -> dict[str, Any] | None:
    """``baseline.json`` of a baseline directory, version-checked; None for a run directory."""
    meta_path = Path(path) / BASELINE_FILE
    if not meta_path.is_file():
        return None
    return read_versioned_json(meta_path, key="baseline_version", current=BASELINE_VERSION,
                               what="baseline", fix="save the baseline again with `gradprobe "
                               "baseline save RUN_DIR --name NAME --force`")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_baseline_files(path: Path, meta: dict[str, Any]) -> None:
    """UserError naming the first records file that is missing or differs from what
    ``baseline.json`` recorded (a truncated checkout, an edited or corrupted file)."""
    for relative, expected in meta.get("files", {}).items():
        file = path / relative
        if not file.is_file():
            raise UserError(f"{file}: missing from baseline {meta.get('name')!r}; restore it "
                            "(git checkout) or save the baseline again")
        if file_digest(file) != expected.get("sha256"):
            raise UserError(f"{file}: differs from the checksum in {BASELINE_FILE}; restore it "
                            "(git checkout) or save the baseline again")


def load_side(path: str | Path, label: str) -> Side:
    """Read a run or baseline directory; UserError (one line) for anything missing or
    corrupt, so ``gradprobe compare`` exits 2 without writing anything."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{label} {path}: no such run or baseline directory")
    meta = read_baseline_meta(path)
    if meta is not None:
        verify_baseline_files(path, meta)
    kind = "baseline" if meta is not None else "run"
    manifest = read_manifest(path)
    check_stray_files(path, manifest, meta)
    if manifest.status != "complete":
        raise UserError(f"{path}: the run is not complete (status {manifest.status!r}); "
                        f"finish it with `gradprobe run CONFIG --out {path}`")
    cells = cell_files(path, manifest)
    seeds = [pc.unique(read_table(Path(c.path), ["seed"]).column("seed")).to_numpy()
             for c in cells]
    return Side(label, str(path), kind, manifest, manifest.experiment, tuple(cells),
                np.unique(np.concatenate([np.array([], np.int64), *seeds])).astype(np.int64))
