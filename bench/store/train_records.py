"""Training records: per-step losses and per-parameter gradient statistics, in Parquet.

Layout (next to ``records/``)::

    <run>/train/loss/cell-<cell_id>.parquet    one row per (training setup, seed, step)
    <run>/train/grads/cell-<cell_id>.parquet   one row per (setup, seed, logged step, param)

``pandas.read_parquet("<run>/train/loss")`` reads every cell. Both tables start with the
identity columns: ``cell_id``, the records' axis columns (every ``[model]`` and ``[data]``
key, ``device``, ``dtype``), every ``[train]`` key (``steps``, ``optimizer``, ``lr``,
``momentum``, ``samples``, ``log_every``, ``teacher_depth``, ``teacher_width``), ``train_id``
(hash of those keys), ``seed``, ``step`` (updates made so far; 0 = the initial state).

* loss: ``init_fingerprint`` (the student's initial state, as in the records),
  ``task_fingerprint`` (teacher inputs and targets; equal for paired cells), ``loss_value``
  (float64, the full-batch MSE; NaN or inf once a seed has diverged).
* grads: ``param``, ``layer``, ``kind``, ``numel`` and the metrics of
  :mod:`gradprobe.bench.engine.metrics`
  at that step (``weight_l2`` of the current weights, ``act_rms``/``grad_act_rms`` of the
  training batch).

Each file's metadata holds ``gradprobe.train_schema_version`` and ``gradprobe.cell``. The
cell's records file is written after both, so a cell whose records exist is fully done.
Version 1 is the first; 2 adds the records' ``data_factory`` column (version 1 files are
read with its default ``""``); readers refuse newer versions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gradprobe.bench.engine.metrics import COUNT_METRICS, METRICS
from gradprobe.bench.engine.training import TrainResult
from gradprobe.bench.init.initialization import ParamSpec
from gradprobe.bench.plan.config import DataConfig, ModelConfig, TrainConfig
from gradprobe.bench.plan.sweep import Cell
from gradprobe.bench.store.records import ARROW_TYPES, AXIS_FIELDS, META_CELL
from gradprobe.core.atomic_files import write_atomic
from gradprobe.core.documents import read_versioned_parquet
from gradprobe.core.errors import UserError

TRAIN_SCHEMA_VERSION = 2
TRAIN_DIR = "train"
KINDS = ("loss", "grads")
META_VERSION = b"gradprobe.train_schema_version"

TRAIN_FIELDS = [pa.field(f.name, ARROW_TYPES[type(f.default)]) for f in fields(TrainConfig)]
TRAIN_COLUMNS = tuple(f.name for f in TRAIN_FIELDS)
_IDENTITY = [pa.field("cell_id", pa.string()), *AXIS_FIELDS, *TRAIN_FIELDS,
             pa.field("train_id", pa.string()), pa.field("seed", pa.int64()),
             pa.field("step", pa.int64())]
LOSS_SCHEMA = pa.schema([*_IDENTITY, pa.field("init_fingerprint", pa.string()),
                         pa.field("task_fingerprint", pa.string()),
                         pa.field("loss_value", pa.float64())])
GRADS_SCHEMA = pa.schema([
    *_IDENTITY, pa.field("param", pa.string()), pa.field("layer", pa.int64()),
    pa.field("kind", pa.string()), pa.field("numel", pa.int64()),
    *(pa.field(m, pa.int64() if m in COUNT_METRICS else pa.float64()) for m in METRICS),
])


def _identity(cell: Cell, result: TrainResult, seeds: np.ndarray,
              steps: np.ndarray) -> dict[str, pa.Array]:
    rows = len(seeds)
    constants = {"cell_id": cell.cell_id, **cell.axes(), **asdict(result.train),
                 "train_id": result.train.train_id}
    columns = {f.name: pa.repeat(pa.scalar(constants[f.name], f.type), rows)
               for f in _IDENTITY if f.name in constants}
    columns.update(seed=pa.array(seeds, pa.int64()), step=pa.array(steps, pa.int64()))
    return columns


def loss_table(cell: Cell, result: TrainResult) -> pa.Table:
    """Rows seed-major, steps ``0..steps`` within each seed."""
    n_seeds, n_steps = result.loss.shape
    columns = _identity(cell, result, np.repeat(result.seeds, n_steps),
                        np.tile(np.arange(n_steps), n_seeds))
    columns.update(
        init_fingerprint=pa.array(np.repeat(result.init_fingerprints, n_steps), pa.string()),
        task_fingerprint=pa.array(np.repeat(result.task_fingerprints, n_steps), pa.string()),
        loss_value=pa.array(result.loss.reshape(-1)),
    )
    return pa.Table.from_arrays([columns[f.name] for f in LOSS_SCHEMA], schema=LOSS_SCHEMA)


def grads_table(cell: Cell, specs: list[ParamSpec], result: TrainResult) -> pa.Table:
    """Rows ordered by seed, logged step, then parameter (spec order)."""
    n_seeds, n_steps, n_params, _ = result.values.shape
    per_seed = n_steps * n_params
    columns = _identity(cell, result, np.repeat(result.seeds, per_seed),
                        np.tile(np.repeat(result.steps, n_params), n_seeds))
    index = pa.array(np.tile(np.arange(n_params), n_seeds * n_steps))
    columns.update(param=pa.array([s.name for s in specs]).take(index),
                   layer=pa.array([s.layer for s in specs], pa.int64()).take(index),
                   kind=pa.array([s.kind for s in specs]).take(index),
                   numel=pa.array([s.numel for s in specs], pa.int64()).take(index))
    flat = result.values.reshape(-1, len(METRICS))
    for i, metric in enumerate(METRICS):
        column = flat[:, i]
        columns[metric] = pa.array(column.astype(np.int64) if metric in COUNT_METRICS
                                   else np.ascontiguousarray(column))
    return pa.Table.from_arrays([columns[f.name] for f in GRADS_SCHEMA], schema=GRADS_SCHEMA)


def train_path(run_dir: Path, kind: str, cell_id: str) -> Path:
    return Path(run_dir) / TRAIN_DIR / kind / f"cell-{cell_id}.parquet"


def write_training(run_dir: Path, cell: Cell, specs: list[ParamSpec],
                   results: list[TrainResult]) -> None:
    """Write a cell's training tables atomically (all its training setups in each)."""
    meta = {META_VERSION: str(TRAIN_SCHEMA_VERSION).encode(),
            META_CELL: json.dumps({"cell_id": cell.cell_id, "axes": cell.axes(),
                                   "trains": [asdict(r.train) for r in results]}).encode()}
    tables = {"grads": pa.concat_tables([grads_table(cell, specs, r) for r in results]),
              "loss": pa.concat_tables([loss_table(cell, r) for r in results])}
    for kind, table in tables.items():
        path = train_path(run_dir, kind, cell.cell_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        table = table.replace_schema_metadata(meta)
        write_atomic(path, lambda tmp, t=table: pq.write_table(t, tmp, compression="zstd"))


def _read_one(path: Path, columns: list[str] | None) -> pa.Table:
    table, version = read_versioned_parquet(
        path, key=META_VERSION, current=TRAIN_SCHEMA_VERSION, what="training schema",
        fix="delete it and its records file, then re-run the sweep into the same directory",
        columns=columns)
    _check_name(path, pq.read_schema(path).metadata or {})
    return table if version == TRAIN_SCHEMA_VERSION else _migrate(table, columns)


def _migrate(table: pa.Table, columns: list[str] | None) -> pa.Table:
    """An older table with the columns added since filled with their config defaults."""
    schema = LOSS_SCHEMA if "loss_value" in table.column_names else GRADS_SCHEMA
    defaults = {f.name: f.default for dc in (ModelConfig, DataConfig) for f in fields(dc)}
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.repeat(pa.scalar(defaults[field.name],
                                                                   field.type), len(table)))
    return table.select(columns if columns is not None else schema.names)


def _check_name(path: Path, meta: dict[bytes, bytes]) -> None:
    """A training file copied over another cell's is refused, as records files are
    (:func:`gradprobe.bench.store.records.check_cell_file`)."""
    try:
        cell_id = json.loads(meta[META_CELL])["cell_id"]
    except (KeyError, TypeError, ValueError):
        cell_id = None
    if cell_id != path.name.removeprefix("cell-").removesuffix(".parquet"):
        raise UserError(f"{path}: does not hold the training records of the cell its name "
                        "says; delete it and its records file, then re-run the sweep into "
                        "the same directory")


def read_training(run_dir: str | Path, kind: str, *, cells: list[str] | None = None,
                  columns: list[str] | None = None) -> pd.DataFrame:
    """A run's training table ``kind`` (``loss`` or ``grads``) for the ``cells`` given (all
    files when None); an empty frame when the run has no training records."""
    files = sorted((Path(run_dir) / TRAIN_DIR / kind).glob("cell-*.parquet"))
    if cells is not None:
        wanted = {train_path(run_dir, kind, c) for c in cells}
        files = [f for f in files if f in wanted]
    if not files:
        return pd.DataFrame()
    return pa.concat_tables([_read_one(f, columns) for f in files]).to_pandas()
