"""Histogram records: per seed and parameter, counts of log10 |g| on fixed bins, in Parquet.

Layout (next to ``records/``)::

    <run>/histograms/cell-<cell_id>.parquet   one row per (phase, setup, step, seed, param)

Columns, in order: ``cell_id``; the records' axis columns (every ``[model]`` and ``[data]``
key, ``device``, ``dtype``); ``phase`` (``init``: the measurement at initialisation, the
records' gradient; ``train``: a logged training step); ``train_id`` (the training setup,
as in the training records; ``""`` for ``init``); ``step`` (optimizer updates made so far;
0 for ``init``); ``seed`` (int64); ``param``, ``layer``, ``kind``, ``numel`` as in the
records; ``counts`` (fixed-size list of ``n_bins`` int64: entries with
``10**edges[i] <= |g| < 10**edges[i + 1]``, see :mod:`gradprobe.bench.engine.histograms`);
``n_over`` (finite, ``log10|g| >= high``),
``n_under`` (finite, non-zero, ``log10|g| < low``), ``n_zero``, ``n_nonfinite`` (NaN or
inf). ``sum(counts) + n_over + n_under + n_zero + n_nonfinite == numel`` on every row.

Counts are per seed (the seed is the unit of replication); pooling over seeds is a sum.
Each file's metadata holds ``gradprobe.histogram_schema_version`` (1),
``gradprobe.cell`` (``cell_id``, ``axes``, ``seeds``) and ``gradprobe.histogram_bins``
(``low``, ``high``, ``step``, ``n_bins``: the edges are ``low + i * step``). A cell's
histogram file is written before its records file, so a cell whose records exist is done.
Readers refuse a newer version, a file whose cell id is not its name's, seeds other than the
run's, and bins other than the run's config's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gradprobe.bench.engine.training import TrainResult
from gradprobe.bench.init.initialization import ParamSpec
from gradprobe.bench.plan.histogram_bins import SPECIAL_COUNTS, HistogramConfig
from gradprobe.bench.plan.sweep import Cell
from gradprobe.bench.store.records import AXIS_FIELDS, META_CELL
from gradprobe.core.atomic_files import write_atomic
from gradprobe.core.documents import read_versioned_parquet
from gradprobe.core.errors import UserError, toml_repr

HISTOGRAM_SCHEMA_VERSION = 1
HISTOGRAM_DIR = "histograms"
META_VERSION = b"gradprobe.histogram_schema_version"
META_BINS = b"gradprobe.histogram_bins"
_FIX = "delete it and its records file, then re-run the sweep into the same directory"


def histogram_schema(n_bins: int) -> pa.Schema:
    """The columns documented above, ``counts`` holding ``n_bins`` values."""
    return pa.schema([
        pa.field("cell_id", pa.string()), *AXIS_FIELDS,
        pa.field("phase", pa.string()), pa.field("train_id", pa.string()),
        pa.field("step", pa.int64()), pa.field("seed", pa.int64()),
        pa.field("param", pa.string()), pa.field("layer", pa.int64()),
        pa.field("kind", pa.string()), pa.field("numel", pa.int64()),
        pa.field("counts", pa.list_(pa.int64(), n_bins)),
        *(pa.field(name, pa.int64()) for name in SPECIAL_COUNTS),
    ])


def _part(cell: Cell, specs: Sequence[ParamSpec], seeds: np.ndarray, counts: np.ndarray,
          phase: str, train_id: str, steps: np.ndarray, n_bins: int) -> pa.Table:
    """Rows of ``counts`` ``(S, L, P, n_counts)``, ordered by seed, step, parameter."""
    n_seeds, n_steps, n_params, n_counts = counts.shape
    rows = n_seeds * n_steps * n_params
    param_index = pa.array(np.tile(np.arange(n_params), n_seeds * n_steps))
    constants = {"cell_id": cell.cell_id, **cell.axes(), "phase": phase, "train_id": train_id}
    schema = histogram_schema(n_bins)
    columns = {f.name: pa.repeat(pa.scalar(constants[f.name], f.type), rows)
               for f in schema if f.name in constants}
    flat = np.ascontiguousarray(counts.reshape(rows, n_counts), dtype=np.int64)
    columns.update(
        step=pa.array(np.tile(np.repeat(steps, n_params), n_seeds), pa.int64()),
        seed=pa.array(np.repeat(seeds.astype(np.int64), n_steps * n_params)),
        param=pa.array([s.name for s in specs]).take(param_index),
        layer=pa.array([s.layer for s in specs], pa.int64()).take(param_index),
        kind=pa.array([s.kind for s in specs]).take(param_index),
        numel=pa.array([s.numel for s in specs], pa.int64()).take(param_index),
        counts=pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(flat[:, :n_bins]).reshape(-1)), n_bins),
    )
    for i, name in enumerate(SPECIAL_COUNTS):
        columns[name] = pa.array(flat[:, n_bins + i])
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def histogram_table(cell: Cell, specs: Sequence[ParamSpec], seeds: np.ndarray,
                    init_counts: np.ndarray, trained: Sequence[TrainResult] = ()) -> pa.Table:
    """A cell's histogram rows: ``init_counts`` ``(S, P, n_counts)`` at initialisation, then
    each training setup's ``histograms`` ``(S, L, P, n_counts)`` at its logged steps."""
    n_bins = cell.histograms.n_bins
    parts = [_part(cell, specs, seeds, init_counts[:, None], "init", "", np.zeros(1, int),
                   n_bins)]
    for result in trained:
        parts.append(_part(cell, specs, result.seeds, result.histograms, "train",
                           result.train.train_id, result.steps, n_bins))
    return pa.concat_tables(parts)


def histogram_path(run_dir: Path, cell_id: str) -> Path:
    return Path(run_dir) / HISTOGRAM_DIR / f"cell-{cell_id}.parquet"


def write_histograms(run_dir: Path, cell: Cell, table: pa.Table) -> Path:
    """Write a cell's histogram table atomically, with the metadata documented above."""
    meta = {META_VERSION: str(HISTOGRAM_SCHEMA_VERSION).encode(),
            META_CELL: json.dumps({"cell_id": cell.cell_id, "axes": cell.axes(),
                                   "seeds": list(cell.seeds)}).encode(),
            META_BINS: json.dumps({**asdict(cell.histograms),
                                   "n_bins": cell.histograms.n_bins}).encode()}
    path = histogram_path(run_dir, cell.cell_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = table.replace_schema_metadata(meta)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return path


def _check_meta(path: Path, seeds: list[int] | None, bins: HistogramConfig) -> None:
    """The file holds the cell its name says, with the run's seeds and bins."""
    meta = pq.read_schema(path).metadata or {}
    try:
        cell = json.loads(meta[META_CELL])
        stored = json.loads(meta[META_BINS])
        cell_id, file_seeds = cell["cell_id"], [int(s) for s in cell["seeds"]]
        file_bins = HistogramConfig(stored["low"], stored["high"], stored["step"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: no valid gradprobe histogram metadata; {_FIX}") from None
    if cell_id != path.name.removeprefix("cell-").removesuffix(".parquet"):
        raise UserError(f"{path}: holds the histograms of cell {cell_id}, not of the cell its "
                        f"name says; {_FIX}")
    if seeds is not None and file_seeds != seeds:
        raise UserError(f"{path}: has seeds {toml_repr(file_seeds)}, not the run's "
                        f"{toml_repr(seeds)}; {_FIX}")
    if file_bins != bins:
        raise UserError(f"{path}: bins {asdict(file_bins)} are not the run's [histograms] "
                        f"{asdict(bins)}; {_FIX}")


def read_histogram_file(path: Path, bins: HistogramConfig, seeds: list[int] | None = None,
                        columns: list[str] | None = None) -> pa.Table:
    """One cell's histogram table, checked (version, name, seeds, bins)."""
    table, _ = read_versioned_parquet(path, key=META_VERSION, current=HISTOGRAM_SCHEMA_VERSION,
                                      what="histogram schema", fix=_FIX, columns=columns)
    _check_meta(path, seeds, bins)
    return table


def read_histograms(run_dir: str | Path, bins: HistogramConfig, *,
                    cells: dict[str, list[int]] | None = None,
                    columns: list[str] | None = None) -> pd.DataFrame:
    """Histogram rows of ``cells`` (``{cell_id: seeds}``; every file when None) as one
    DataFrame, ``counts`` as one ``(n_bins,)`` int64 array per row (:func:`count_matrix`);
    an empty frame when there are none."""
    folder = Path(run_dir) / HISTOGRAM_DIR
    files = sorted(folder.glob("cell-*.parquet"))
    if cells is not None:
        files = [f for f in files if f.name.removeprefix("cell-").removesuffix(".parquet")
                 in cells]
    if not files:
        return pd.DataFrame()
    seeds = (lambda f: cells[f.name[5:-8]]) if cells is not None else (lambda f: None)
    tables = [read_histogram_file(f, bins, seeds(f), columns) for f in files]
    return pa.concat_tables(tables).to_pandas()


def count_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The ``counts`` column of :func:`read_histograms` as one ``(rows, n_bins)`` array."""
    if frame.empty:
        return np.zeros((0, 0), dtype=np.int64)
    return np.stack(frame["counts"].to_numpy()).astype(np.int64, copy=False)
