"""Raw records: one Parquet row per (cell, seed, parameter), with a versioned schema.

Layout of a run directory::

    <run>/config.toml         the config text as given
    <run>/manifest.json       run manifest (gradprobe.bench.store.manifest)
    <run>/records/cell-<cell_id>.parquet   one file per cell, written atomically

``pandas.read_parquet("<run>/records")`` returns all rows. Columns, in order:

* ``cell_id`` (string): content hash of the cell (gradprobe.bench.plan.sweep.Cell.cell_id).
* every ``[model]`` and ``[data]`` key, named as in the TOML (``depth``, ``width``,
  ``residual``, ``activation``, ``init_gain``, ``batch_size``, ``input`` ...), then
  ``device`` and ``dtype``. ``input`` is ``uniform``, ``normal`` or ``fixed:<hash>``.
* ``seed`` (int64), ``param`` (``layers.N.weight``), ``layer`` (int64, 0 = first),
  ``kind`` (``weight``/``bias``), ``numel`` (int64).
* ``init_fingerprint`` (string, 16 hex digits): checksum of the seed's initial parameters and
  input; equal fingerprints mean the same starting point
  (gradprobe.bench.init.initialization.fingerprint).
* metrics (float64 unless noted): ``grad_mean_abs``, ``grad_l2``, ``grad_max_abs``,
  ``grad_nonfinite`` (int64), ``grad_zero`` (int64), ``weight_l2``, ``act_rms`` and
  ``grad_act_rms`` (of the parameter's layer output h_l and of dL/dh_l), ``loss_value`` (the
  seed's loss, repeated on each of its rows).

Each file's Parquet metadata holds ``gradprobe.schema_version``, ``gradprobe.cell`` (the cell
as JSON), ``gradprobe.manifest`` (the run manifest as known when the file was written, less
its per-cell lists and the config's text: see :func:`record_manifest`) and ``gradprobe.timing``
(``compute_seconds``, ``init_seconds``, ``n_seeds``, ``rows``; plus ``train_seconds`` for
trained cells and ``batching`` for factory cells).

Versions: 1 had no ``init_rng`` column; 2 adds it; 3 adds ``residual_form``,
``residual_scale``, ``rezero``, ``norm``, ``norm_position``; 4 adds ``factory`` (``""`` for
the built-in MLP; for a factory model ``param`` is the ``named_parameters()`` name, ``layer``
the index of the owning module and ``kind`` the name within it, see
:mod:`gradprobe.bench.models.factory`); 5
adds ``data_factory`` (``[data] factory``, ``""`` when gradprobe draws the input).
Older files are migrated on read by :func:`migrate`: a config key added later gets its
default, which by construction reproduces what older code did.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gradprobe.bench.plan.config import (
    LEGACY_MODELS,
    DataConfig,
    ModelConfig,
    current_factory_name,
)
from gradprobe.bench.plan.measures import COUNT_METRICS, METRICS, RECORDS_SCHEMA_VERSION
from gradprobe.bench.store.manifest import MANIFEST_FILE, Manifest, read_manifest
from gradprobe.core.atomic_files import write_atomic
from gradprobe.core.documents import parquet_version, read_versioned_parquet
from gradprobe.core.errors import UserError, toml_repr

SCHEMA_VERSION = RECORDS_SCHEMA_VERSION
RECORDS_DIR = "records"
META_VERSION = b"gradprobe.schema_version"
META_CELL = b"gradprobe.cell"
META_MANIFEST = b"gradprobe.manifest"
META_TIMING = b"gradprobe.timing"

ROW_COLUMNS = ("seed", "param", "layer", "kind", "numel", "init_fingerprint")
ANALYSIS_METRICS = tuple(m for m in METRICS if m not in COUNT_METRICS)

ARROW_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}


def _axis_fields() -> list[pa.Field]:
    out = []
    for dc in (ModelConfig, DataConfig):
        for f in fields(dc):
            out.append(pa.field(f.name, ARROW_TYPES[type(f.default)]))
    return [*out, pa.field("device", pa.string()), pa.field("dtype", pa.string())]


AXIS_FIELDS = _axis_fields()
AXIS_COLUMNS = tuple(f.name for f in AXIS_FIELDS)
SCHEMA = pa.schema([
    pa.field("cell_id", pa.string()),
    *AXIS_FIELDS,
    pa.field("seed", pa.int64()),
    pa.field("param", pa.string()),
    pa.field("layer", pa.int64()),
    pa.field("kind", pa.string()),
    pa.field("numel", pa.int64()),
    pa.field("init_fingerprint", pa.string()),
    *(pa.field(m, pa.int64() if m in COUNT_METRICS else pa.float64()) for m in METRICS),
    pa.field("loss_value", pa.float64()),
])


def cell_table(cell, specs, seeds: np.ndarray, values: np.ndarray, loss: np.ndarray,
               fingerprints: np.ndarray) -> pa.Table:
    """Build a cell's records.

    Takes ``seeds`` ``(S,)``, ``values`` ``(S, P, len(METRICS))`` float64 in spec order,
    ``loss`` ``(S,)`` and ``fingerprints`` ``(S,)`` hex strings; returns a table of
    ``S * P`` rows with :data:`SCHEMA`, seed-major.
    """
    n_seeds, n_params = values.shape[0], len(specs)
    rows = n_seeds * n_params
    seed_index = pa.array(np.repeat(np.arange(n_seeds), n_params))
    param_index = pa.array(np.tile(np.arange(n_params), n_seeds))
    axes = cell.axes()
    columns: dict[str, pa.Array] = {"cell_id": pa.repeat(pa.scalar(cell.cell_id), rows)}
    for f in AXIS_FIELDS:
        columns[f.name] = pa.repeat(pa.scalar(axes[f.name], f.type), rows)
    columns.update(
        seed=pa.array(np.repeat(seeds.astype(np.int64), n_params)),
        param=pa.array([s.name for s in specs]).take(param_index),
        layer=pa.array([s.layer for s in specs], pa.int64()).take(param_index),
        kind=pa.array([s.kind for s in specs]).take(param_index),
        numel=pa.array([s.numel for s in specs], pa.int64()).take(param_index),
        init_fingerprint=pa.array(list(fingerprints), pa.string()).take(seed_index),
    )
    flat = values.reshape(rows, len(METRICS))
    for i, metric in enumerate(METRICS):
        column = flat[:, i]
        columns[metric] = pa.array(column.astype(np.int64) if metric in COUNT_METRICS
                                   else np.ascontiguousarray(column))
    columns["loss_value"] = pa.array(np.repeat(loss, n_params))
    return pa.Table.from_arrays([columns[f.name] for f in SCHEMA], schema=SCHEMA)


def cell_path(run_dir: Path, cell_id: str) -> Path:
    return Path(run_dir) / RECORDS_DIR / f"cell-{cell_id}.parquet"


def record_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """What each records file embeds: the manifest without anything that grows with the
    number of cells (the cell list, the skipped cells' ids, per-cell timings), so a file's
    size does not depend on how many cells its sweep has. Embedding the full manifest made
    storage grow with the square of the cell count (issue 14). The config is named by its
    ``name``, ``source`` and ``sha256`` only: its text (``config.toml`` and ``manifest.json``
    of the run hold it) grows with the values a sweep lists, 5.7 KB of every file of an
    800-value ``init_gain`` sweep; the file's own cell is in ``gradprobe.cell`` in full."""
    out = {k: v for k, v in manifest.items() if k not in ("cells", "timings", "batching")}
    if "skipped" in out:
        out["skipped"] = [{k: v for k, v in s.items() if k != "cells"} for s in out["skipped"]]
    if isinstance(out.get("config"), dict):
        out["config"] = {k: v for k, v in out["config"].items()
                         if k not in ("text", "description")}
    return out


def write_cell(run_dir: Path, cell, table: pa.Table, manifest: dict[str, Any],
               timing: dict[str, float] | None = None) -> Path:
    """Write a cell's records atomically (:mod:`gradprobe.core.atomic_files`): a reader or a
    resumed run sees either the whole file or none of it. ``manifest`` is the run manifest;
    only :func:`record_manifest` of it is embedded."""
    path = cell_path(run_dir, cell.cell_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        META_VERSION: str(SCHEMA_VERSION).encode(),
        META_CELL: json.dumps({"cell_id": cell.cell_id, "axes": cell.axes(),
                               "seeds": list(cell.seeds)}).encode(),
        META_MANIFEST: json.dumps(record_manifest(manifest)).encode(),
        META_TIMING: json.dumps(timing or {}).encode(),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return path


def record_files(run_dir: Path) -> list[Path]:
    """The finished cell files of a run (temporary files are hidden and not listed)."""
    return sorted((Path(run_dir) / RECORDS_DIR).glob("cell-*.parquet"))


_REDO = "delete it and re-run the sweep into the same directory to redo that cell"


def readable_schema_version(path: Path) -> int:
    """The schema version of one records file, or UserError if this code cannot read it
    (damaged, not gradprobe's, or newer). Reading and resuming both call this, so a run
    never counts as finished a cell that ``analyze`` would refuse."""
    return parquet_version(path, key=META_VERSION, current=SCHEMA_VERSION,
                           what="records schema", fix=_REDO)


def file_rows(path: Path) -> int:
    """Rows of one records file, from its footer (older files have no timing metadata)."""
    return pq.read_metadata(path).num_rows


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    """Read one cell file, checking its schema version and migrating an older one."""
    table, version = read_versioned_parquet(path, key=META_VERSION, current=SCHEMA_VERSION,
                                            what="records schema", fix=_REDO,
                                            columns=columns)
    if version == SCHEMA_VERSION:
        return table
    table = migrate(table, version)
    return table.select(columns) if columns is not None else table


def migrate(table: pa.Table, version: int) -> pa.Table:
    """Bring a table of an older schema version to :data:`SCHEMA_VERSION`.

    Every change so far added a config key; its column is filled with the key's default,
    the value under which older code ran. Columns come out in :data:`SCHEMA` order.
    """
    if version == SCHEMA_VERSION:
        return table
    defaults = {f.name: f.default for dc in (ModelConfig, DataConfig) for f in fields(dc)}
    for field in SCHEMA:
        if field.name not in table.column_names:
            if field.name not in defaults:
                raise UserError(f"records schema version {version} lacks column {field.name} "
                                "and no migration fills it; re-run the sweep")
            table = table.append_column(field, pa.repeat(pa.scalar(defaults[field.name],
                                                                   field.type), len(table)))
    return table.select(SCHEMA.names).cast(SCHEMA)


def cell_meta(path: Path) -> dict[str, Any]:
    """The ``gradprobe.cell`` metadata of one records file (``cell_id``, ``axes``,
    ``seeds``); UserError if it is missing or not JSON."""
    meta = pq.read_schema(path).metadata or {}
    try:
        cell = json.loads(meta[META_CELL])
        cell_id, seeds = cell["cell_id"], [int(s) for s in cell["seeds"]]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: no valid gradprobe.cell metadata; it was not written by "
                        "gradprobe, or is damaged: delete it and re-run the sweep into the "
                        "same directory to redo that cell") from None
    return {**cell, "cell_id": cell_id, "seeds": seeds}


def check_cell_file(path: Path, plan: dict[str, list[int]] | None) -> None:
    """Check that ``path`` holds the cell its name says, and that the cell (id and seeds)
    belongs to ``plan`` (``{cell_id: seeds}`` of the run, from :func:`planned_cells`; None
    when there is no manifest to check against).

    A file copied over another, or a valid file of another sweep dropped into ``records/``,
    would otherwise be read as this run's data: duplicated rows, or a foreign experiment
    analysed silently. Call after :func:`readable_schema_version`."""
    cell = cell_meta(path)
    named = path.name.removeprefix("cell-").removesuffix(".parquet")
    if cell["cell_id"] != named:
        raise UserError(f"{path}: holds the records of cell {cell['cell_id']}, not of the cell "
                        "its name says; it was copied or renamed: delete it and re-run the "
                        "sweep into the same directory to redo that cell")
    if plan is None:
        return
    if named not in plan:
        raise UserError(f"{path}: cell {named} is not part of this run's sweep (see its "
                        "manifest.json); it belongs to another run: move it out of records/")
    if cell["seeds"] != plan[named]:
        raise UserError(f"{path}: cell {named} has seeds {toml_repr(cell['seeds'])}, not the "
                        f"seeds {toml_repr(plan[named])} this run's manifest lists; delete it "
                        "and re-run the sweep into the same directory to redo that cell")


def planned_cells(manifest: Manifest) -> dict[str, list[int]]:
    """``{cell_id: seeds}`` of the cells a run manifest plans (every cell has the config's
    seeds, after ``--seeds``)."""
    seeds = [int(s) for s in manifest.config.seeds]
    return {cell_id: seeds for cell_id in manifest.cell_ids}


def read_timing(path: Path) -> dict[str, float]:
    """The ``gradprobe.timing`` metadata of one cell file (empty for older files)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(META_TIMING, b"{}"))


def read_records(run_dir: str | Path, columns: list[str] | None = None,
                 cells: list[str] | None = None) -> pd.DataFrame:
    """Records of a run (all cells, or the ``cells`` ids given) as one DataFrame with the
    columns documented above (or the ``columns`` asked for)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run directory")
    files = record_files(run_dir)
    if not files:
        raise UserError(f"{run_dir}: no records found in {run_dir / RECORDS_DIR}; run "
                        "`gradprobe run CONFIG --out DIR` first")
    if cells is not None:
        wanted = {cell_path(run_dir, c) for c in cells}
        files = [f for f in files if f in wanted]
    plan = _run_plan(run_dir)
    tables = []
    for path in files:
        table = read_table(path, columns)
        check_cell_file(path, plan)
        tables.append(table)
    records = pa.concat_tables(tables).to_pandas()
    legacy = records["factory"].str.startswith(LEGACY_MODELS) if "factory" in records else None
    if legacy is not None and legacy.any():  # gradprobe < 0.2 named its models bench.models
        records.loc[legacy, "factory"] = records.loc[legacy, "factory"].map(
            current_factory_name)
    return records


def _run_plan(run_dir: Path) -> dict[str, list[int]] | None:
    """The run's planned cells, or None for a records folder without a manifest."""
    if not (run_dir / MANIFEST_FILE).is_file():
        return None
    return planned_cells(read_manifest(run_dir))
