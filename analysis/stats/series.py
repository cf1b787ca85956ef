"""From long records to matrices: one row per (cell, parameter), one column per seed.

Every statistic in gradprobe is computed over seeds, so the first step is always the same:
pivot the records (one row per cell, seed and parameter) into a *series* table, whose keys
say what each row is, and one ``(num_series x num_seeds)`` matrix per metric.

:func:`build_series` pivots a whole DataFrame of records; :func:`cell_series` pivots one
cell's Arrow table with numpy index arithmetic (no pandas reshaping: unstacking Arrow-backed
string columns was 85% of the analysis time, issue 14), and :func:`concat_series` stacks
the series of several cells on the union of their seeds, as :func:`build_series` of their
records would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from gradprobe.bench.store.records import ANALYSIS_METRICS, AXIS_COLUMNS, AXIS_FIELDS
from gradprobe.core.errors import UserError

SERIES_KEY = ["cell_id", "param"]
PARAM_COLUMNS = ["param", "layer", "kind", "numel"]


@dataclass(frozen=True)
class Series:
    """Records pivoted by seed.

    ``keys``: DataFrame with one row per (cell, parameter): ``cell_id``, every axis column,
    ``param``, ``layer``, ``kind``, ``numel``, ``n_layers`` (the cell's depth in layers).
    ``values[metric]``: ``(len(keys) x len(seeds))`` float64; NaN where a seed is missing or
    where the metric itself is NaN (a NaN gradient): ``present`` tells the two apart.
    ``fingerprints``: ``(len(keys) x len(seeds))`` object array of init fingerprints.
    ``present``: ``(len(keys) x len(seeds))`` bool, whether the seed has a record.
    """

    keys: pd.DataFrame
    seeds: np.ndarray
    values: dict[str, np.ndarray]
    fingerprints: np.ndarray
    present: np.ndarray

    def rows(self, mask: np.ndarray) -> Series:
        """The series selected by a boolean mask over ``keys``."""
        return Series(self.keys[mask].reset_index(drop=True), self.seeds,
                      {m: v[mask] for m, v in self.values.items()}, self.fingerprints[mask],
                      self.present[mask])


def build_series(records: pd.DataFrame, metrics=ANALYSIS_METRICS) -> Series:
    """Pivot records (columns as in :mod:`gradprobe.bench.store.records`) into a :class:`Series`."""
    axes = [c for c in AXIS_COLUMNS if c in records.columns]
    keys = (records.drop_duplicates(SERIES_KEY)[["cell_id", *axes, *PARAM_COLUMNS]]
            .sort_values([*axes, "layer", "kind"], kind="stable")
            .reset_index(drop=True))
    keys["n_layers"] = keys.groupby("cell_id")["layer"].transform("max") + 1
    wide = records.set_index([*SERIES_KEY, "seed"])[[*metrics, "init_fingerprint", "numel"]]
    wide = wide.unstack("seed")
    index = pd.MultiIndex.from_frame(keys[SERIES_KEY])
    wide = wide.reindex(index)
    seeds = np.asarray(wide[metrics[0]].columns, dtype=np.int64)
    values = {m: wide[m].to_numpy(dtype=np.float64) for m in metrics}
    prints = wide["init_fingerprint"].to_numpy(dtype=object)
    present = wide["numel"].notna().to_numpy()
    return Series(keys, seeds, values, prints, present)


def cell_series(table: pa.Table, cell_id: str, axes: dict, metrics=ANALYSIS_METRICS
                ) -> Series:
    """The :class:`Series` of one cell, equal to :func:`build_series` of its records.

    Takes the cell's records as an Arrow ``table`` with at least ``seed``, ``param``,
    ``layer``, ``kind``, ``numel`` and ``metrics`` (any row order; without
    ``init_fingerprint`` the fingerprints are all missing), the
    cell's id and its ``axes`` (``{axis column: value}``: constant within a cell). Keys are
    ordered by layer and kind, ties in order of first appearance, as in :func:`build_series`.
    """
    seeds, seed_index = np.unique(table.column("seed").to_numpy(), return_inverse=True)
    params = table.column("param").combine_chunks().dictionary_encode()
    param_index = params.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    shape = (len(params.dictionary), len(seeds))
    if np.bincount(param_index * shape[1] + seed_index, minlength=shape[0] * shape[1]).max(
            initial=0) > 1:
        raise UserError(f"cell {cell_id}: a (seed, parameter) appears twice in its records; "
                        "delete its file and re-run the sweep into the same directory")
    first = np.unique(param_index, return_index=True)[1]  # first row of each parameter
    keys = _cell_keys(table.take(first), cell_id, axes)
    order = keys.sort_values(["layer", "kind"], kind="stable").index.to_numpy()
    rows = np.argsort(order)[param_index]  # each record's row in the sorted keys
    present = np.zeros(shape, dtype=bool)
    present[rows, seed_index] = True
    values = {}
    for metric in metrics:
        matrix = np.full(shape, np.nan)
        matrix[rows, seed_index] = table.column(metric).to_numpy()
        values[metric] = matrix
    prints = np.full(shape, np.nan, dtype=object)
    if "init_fingerprint" in table.column_names:  # only paired effects compare them
        prints[rows, seed_index] = table.column("init_fingerprint").to_numpy(
            zero_copy_only=False)
    return Series(keys.iloc[order].reset_index(drop=True), seeds, values, prints, present)


def _cell_keys(first_rows: pa.Table, cell_id: str, axes: dict) -> pd.DataFrame:
    """Keys of one cell's parameters (one row each, in ``first_rows`` order), with the
    column types :func:`build_series` gets from the records."""
    n = len(first_rows)
    columns = {"cell_id": pa.repeat(pa.scalar(cell_id, pa.string()), n)}
    for f in AXIS_FIELDS:
        if f.name in axes:
            columns[f.name] = pa.repeat(pa.scalar(axes[f.name], f.type), n)
    for name in PARAM_COLUMNS:
        columns[name] = first_rows.column(name)
    keys = pa.table(columns).to_pandas()
    keys["n_layers"] = keys["layer"].max() + 1
    return keys


def concat_series(parts: list[Series]) -> Series:
    """The series of several cells as one, on the sorted union of their seeds (NaN, None
    and ``present`` False where a cell lacks a seed, :func:`on_seeds`); keys in the order of
    ``parts``."""
    if len(parts) == 1:
        return parts[0]
    seeds = np.unique(np.concatenate([p.seeds for p in parts]))
    wide = [on_seeds(p, seeds) for p in parts]
    keys = pd.concat([p.keys for p in parts], ignore_index=True)
    values = {m: np.vstack([w.values[m] for w in wide]) for m in parts[0].values}
    return Series(keys, seeds, values, np.vstack([w.fingerprints for w in wide]),
                  np.vstack([w.present for w in wide]))


def on_seeds(series: Series, seeds: np.ndarray) -> Series:
    """``series`` with one column per seed of ``seeds`` (sorted, a superset of
    ``series.seeds``): NaN, None and ``present`` False for seeds it lacks, as
    :func:`build_series` pivots a cell among the records of other cells."""
    if np.array_equal(series.seeds, seeds):
        return series
    where = np.searchsorted(seeds, series.seeds)

    def widen(block: np.ndarray, fill, dtype) -> np.ndarray:
        out = np.full((len(block), len(seeds)), fill, dtype=dtype)
        out[:, where] = block
        return out

    return Series(series.keys, np.asarray(seeds, dtype=np.int64),
                  {m: widen(v, np.nan, np.float64) for m, v in series.values.items()},
                  widen(series.fingerprints, np.nan, object),
                  widen(series.present, False, bool))


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The axis columns (config keys, device, dtype) present in ``frame``."""
    return [c for c in AXIS_COLUMNS if c in frame.columns]


def varying_axes(frame: pd.DataFrame) -> list[str]:
    """Axis columns that take more than one value in ``frame``."""
    return [c for c in axis_columns(frame) if frame[c].nunique(dropna=False) > 1]
