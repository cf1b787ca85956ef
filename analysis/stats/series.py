"""From long records to matrices: one row per (cell, parameter), one column per seed.

Every statistic in gradprobe is computed over seeds, so the first step is always the same:
pivot the records (one row per cell, seed and parameter) into a *series* table, whose keys
say what each row is, and one ``(num_series x num_seeds)`` matrix per metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradprobe.bench.store.records import ANALYSIS_METRICS, AXIS_COLUMNS

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


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The axis columns (config keys, device, dtype) present in ``frame``."""
    return [c for c in AXIS_COLUMNS if c in frame.columns]


def varying_axes(frame: pd.DataFrame) -> list[str]:
    """Axis columns that take more than one value in ``frame``."""
    return [c for c in axis_columns(frame) if frame[c].nunique(dropna=False) > 1]
