"""The run directory: naming, creation, and the rule that one directory holds one sweep.

A run directory belongs to one *plan*: the set of cells (config after CLI overrides, seeds
included). Re-running the same plan into it resumes: finished cells are kept. A different
plan is refused unless ``--force``, which deletes the old records first, so records of two
experiments can never end up mixed in one directory. A non-empty directory that is not a run
directory is refused, ``--force`` or not: gradprobe deletes only files it wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import pandas as pd

from gradprobe.bench.plan.sweep import Cell, ExperimentConfig
from gradprobe.bench.store.histogram_records import (
    HISTOGRAM_DIR,
    histogram_path,
    read_histograms,
)
from gradprobe.bench.store.manifest import MANIFEST_FILE, Manifest, read_manifest
from gradprobe.bench.store.records import (
    RECORDS_DIR,
    cell_path,
    check_cell_file,
    file_rows,
    read_records,
    read_timing,
    readable_schema_version,
)
from gradprobe.bench.store.run_lock import CELL_TEMPORARIES, LOCK_FILE, check_unlocked
from gradprobe.bench.store.train_records import TRAIN_DIR, read_training
from gradprobe.core.errors import UserError
from gradprobe.core.hashing import short_hash

# Where gradprobe writes cell files; --force and stale-temporary cleanup look only here.
RECORD_FOLDERS = (RECORDS_DIR, f"{TRAIN_DIR}/loss", f"{TRAIN_DIR}/grads", HISTOGRAM_DIR)
# What later stages add to a run directory (written by gradprobe.analysis).
ANALYSIS_DIR = "analysis"
COMPARE_JSON, COMPARE_MD = "compare.json", "compare.md"
REPORT_FILE = "index.html"


@dataclass(frozen=True)
class RunDir:
    """A run directory: its layout, and its manifest loaded and checked once.

    ::

        <run>/manifest.json        what ran, where, with which code (:attr:`manifest`)
        <run>/records/cell-*.parquet   raw records, one file per cell (:meth:`records`)
        <run>/train/{loss,grads}/  training records, for configs with [train]
        <run>/histograms/cell-*.parquet   log10|g| histograms (:meth:`histograms`)
        <run>/analysis/            analysis tables and analysis.json (gradprobe analyze)
        <run>/compare.json, compare.md   the last comparison (gradprobe compare)
        <run>/index.html           the report (gradprobe report)
        <run>/.lock                held by the run that writes here
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def records_dir(self) -> Path:
        return self.path / RECORDS_DIR

    @property
    def train_dir(self) -> Path:
        return self.path / TRAIN_DIR

    @property
    def analysis_dir(self) -> Path:
        return self.path / ANALYSIS_DIR

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def compare_json(self) -> Path:
        return self.path / COMPARE_JSON

    @property
    def report_path(self) -> Path:
        return self.path / REPORT_FILE

    @cached_property
    def manifest(self) -> Manifest:
        """The typed manifest (a UserError naming the file when it is missing or damaged)."""
        return read_manifest(self.path)

    @property
    def config(self) -> ExperimentConfig:
        """The config the run ran (after command-line overrides), parsed once."""
        return self.manifest.experiment

    def records(self, *, columns: list[str] | None = None,
                cells: list[str] | None = None) -> pd.DataFrame:
        """The raw records, one row per (cell, seed, parameter); columns as in
        :mod:`gradprobe.bench.store.records` (or only ``columns``)."""
        return read_records(self.path, columns=columns, cells=cells)

    def training_records(self, kind: str = "loss") -> pd.DataFrame:
        """Training records ``kind`` (``loss`` or ``grads``) of the planned cells; empty
        for a run without ``[train]``."""
        return read_training(self.path, kind, cells=self.manifest.cell_ids)

    def histograms(self, *, cells: list[str] | None = None,
                   columns: list[str] | None = None) -> pd.DataFrame:
        """Histogram records of the planned cells (or of ``cells``), columns as in
        :mod:`gradprobe.bench.store.histogram_records`; empty when the run made none
        (``[histograms] enabled = false``, or a run of an older gradprobe)."""
        bins = self.config.histograms
        if bins is None:
            return pd.DataFrame()
        seeds = [int(s) for s in self.manifest.config.seeds]
        wanted = self.manifest.cell_ids if cells is None else cells
        return read_histograms(self.path, bins, cells={c: seeds for c in wanted},
                               columns=columns)


def slug(text: str, default: str = "run") -> str:
    """``text`` with only characters that are safe in file names everywhere."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or default


def default_run_dir(config: ExperimentConfig, root: Path = Path("reports")) -> Path:
    """``reports/<name>-<YYYYmmdd-HHMMSS>`` (suffixed when that already exists)."""
    base = root / f"{slug(config.name)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


# A default run directory's name: ``<name>-<YYYYmmdd-HHMMSS>`` and, for a second one made
# in the same second, ``-<n>`` (n >= 2).
_DEFAULT_NAME = re.compile(r"(?P<base>.*-\d{8}-\d{6})(?:-(?P<n>\d+))?")


def start_order(started_at: str, path: Path) -> tuple:
    """A sort key that orders runs by when they started: the manifest's ``started_at``
    (parsed, so second- and microsecond-resolution stamps compare), then, for runs whose
    stamps tie (manifests before microsecond stamps), the order :func:`default_run_dir`
    made their directories in, then the path."""
    try:
        started = datetime.fromisoformat(started_at)
    except ValueError:
        raise UserError(f"{path / MANIFEST_FILE}: damaged manifest (key started_at: "
                        f"{started_at!r} is not an ISO 8601 time); re-run into a new "
                        "directory") from None
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    match = _DEFAULT_NAME.fullmatch(path.name)
    made = (match["base"], int(match["n"] or 1)) if match else (path.name, 0)
    return started, made, str(path)


def plan_id(cells: list[Cell]) -> str:
    """Hash of the set of cells a run directory is for."""
    return short_hash(sorted(c.cell_id for c in cells))


def create_run_dir(run_dir: Path) -> None:
    """Make ``<run>/records``; one-line UserError when the path cannot be a directory."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a directory; choose another --out")
    if run_dir.is_dir():  # checked again under the lock; here so a refusal writes nothing
        check_unlocked(run_dir)
        check_is_run_dir(run_dir)
    try:
        (run_dir / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{run_dir}: cannot create run directory ({err.strerror}); check the "
                        "path and its permissions") from None


def check_is_run_dir(run_dir: Path) -> None:
    """Refuse a non-empty directory without ``manifest.json``: it is not a run directory, so
    gradprobe must neither mix its records in nor (with ``--force``) delete anything there.

    Only what a run makes before its manifest (the lock file, an empty ``records/``) is
    allowed, so a run killed at its very start can still be resumed."""
    if (run_dir / MANIFEST_FILE).exists():
        return
    found = [p.name for p in run_dir.iterdir() if p.name not in (LOCK_FILE, RECORDS_DIR)]
    if (run_dir / RECORDS_DIR).is_dir():
        found += [f"{RECORDS_DIR}/{p.name}" for p in (run_dir / RECORDS_DIR).iterdir()]
    if found:
        shown = ", ".join(sorted(found)[:3]) + (", ..." if len(found) > 3 else "")
        raise UserError(f"{run_dir}: holds files ({shown}) but no {MANIFEST_FILE}, so it is "
                        "not a gradprobe run directory; choose another --out (--force only "
                        "replaces a run directory's own records)")


def remove_own_records(run_dir: Path) -> int:
    """``--force``: delete the records gradprobe wrote (and their temporaries), nothing else;
    a file of any other name stays, even inside ``records/``."""
    removed = 0
    for folder in RECORD_FOLDERS:
        for pattern in ("cell-*.parquet", CELL_TEMPORARIES):
            for path in (run_dir / folder).glob(pattern):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def claim_run_dir(run_dir: Path, cells: list[Cell], force: bool) -> None:
    """Check that ``run_dir`` is empty or holds this plan (call under the run lock).

    With ``force`` the old records (and training records) are removed so every cell is
    redone."""
    check_is_run_dir(run_dir)
    if (run_dir / MANIFEST_FILE).exists():
        old = read_manifest(run_dir)
        if old.plan != plan_id(cells) and not force:
            raise UserError(f"{run_dir}: holds records of another sweep "
                            f"({old.config.source}, {len(old.cells)} "
                            "cells); choose another --out, or pass --force to replace them")
    if force:
        remove_own_records(run_dir)


def cell_is_done(run_dir: Path, cell: Cell) -> bool:
    """Whether ``cell``'s files are in place: its records file (written last), and its
    histogram file when it makes one (a histogram file deleted by hand redoes the cell)."""
    return cell_path(run_dir, cell.cell_id).exists() and (
        cell.histograms is None or histogram_path(run_dir, cell.cell_id).exists())


def finished_cells(run_dir: Path, cells: list[Cell]) -> list[Cell]:
    """Cells whose records file is already in place.

    Files are written atomically, so one that exists is complete, unless something outside
    gradprobe damaged it, or a newer gradprobe wrote it: each is checked as ``analyze``
    checks it, and one it would refuse is a one-line error naming it (never silently
    counted as done, never silently deleted)."""
    done = [c for c in cells if cell_is_done(run_dir, c)]
    plan = {c.cell_id: list(c.seeds) for c in cells}
    for cell in done:
        readable_schema_version(cell_path(run_dir, cell.cell_id))
        check_cell_file(cell_path(run_dir, cell.cell_id), plan)
    return done


def count_rows(run_dir: Path, cells: list[Cell]) -> int:
    """Rows of the records of ``cells`` that are in ``run_dir``."""
    paths = [cell_path(run_dir, c.cell_id) for c in cells]
    return sum(file_rows(p) for p in paths if p.exists())


def collect_timings(run_dir: Path, cells: list[Cell]) -> dict[str, dict[str, float]]:
    """Per cell, the timing stored in its records file (so resumed cells keep theirs)."""
    return {c.cell_id: read_timing(cell_path(run_dir, c.cell_id))
            for c in finished_cells(run_dir, cells)}
