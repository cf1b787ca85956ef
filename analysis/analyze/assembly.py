"""The analysis tables from the units' rows: order, run-wide counts, multiple comparisons.

Each unit (:mod:`gradprobe.analysis.analyze.unit_work`) returns its rows with a sort key;
here they are put in the order of the whole-run analysis, and what needs the whole run is
computed from those small tables alone:

* Benjamini-Hochberg adjusted p-values and ``significant`` over each family (all paired
  effects; all layer contrasts), as :func:`gradprobe.analysis.stats.estimators.adjust_pvalues`
  over the whole family;
* counts against the run's seeds (``n_excluded`` of effects, ``n_seeds`` of trends and width
  exponents: a seed of the run that a cell lacks counts as excluded, as it did when every
  cell was pivoted on the run's seeds);
* the mean-field predictions of the trends
  (:func:`gradprobe.analysis.stats.theory.predicted_slopes`);
* device agreement from every group's relative differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gradprobe.analysis.stats.device_agreement import agreement_table, merge_differences
from gradprobe.analysis.stats.estimators import adjust_pvalues
from gradprobe.analysis.stats.theory import predicted_slopes

SORT_COLUMNS = ("_metric", "_role", "_rank", "_row")


def assemble(results: list[dict[str, Any]], seeds: np.ndarray, alpha: float
             ) -> dict[str, pd.DataFrame]:
    """``{table name: DataFrame}`` from every unit's result, for the tables ``summary``,
    ``effects``, ``trends``, ``contrasts``, ``devices`` and ``width``; ``seeds`` are the
    run's (:class:`SeedUnion`)."""
    tables = {name: ordered([r[name] for r in results if name in r])
              for name in ("summary", "effects", "trends", "contrasts", "width")}
    effects, contrasts = tables["effects"], tables["contrasts"]
    if not effects.empty:
        effects["n_excluded"] = len(seeds) - effects["n_pairs"]
        adjust_family(effects, alpha)
    if not contrasts.empty:
        adjust_family(contrasts, alpha)
    for name in ("trends", "width"):
        if not tables[name].empty:
            tables[name]["n_seeds"] = len(seeds)
    tables["trends"] = predicted_slopes(tables["trends"])
    tables["devices"] = agreement_table(merge_differences(
        [r["differences"] for r in results if "differences" in r]))
    return tables


class SeedUnion:
    """The sorted union of the seeds every analysed cell has records for, folded in as the
    units finish (:meth:`add` is an executor's ``on_result``): the driver keeps one array
    of the run's seeds, not one per cell."""

    def __init__(self) -> None:
        self.seeds = np.array([], dtype=np.int64)

    def add(self, index: int, result: dict[str, Any]) -> None:
        """Fold in and drop a unit result's ``seeds`` (``{cell_id: seeds}``)."""
        for seeds in result.pop("seeds", {}).values():
            self.seeds = np.union1d(self.seeds, seeds)


def ordered(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The units' rows of one table in the whole-run order, sort keys dropped."""
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    keys = [c for c in SORT_COLUMNS if c in table.columns]
    return table.sort_values(keys, kind="stable").drop(columns=keys).reset_index(drop=True)


def adjust_family(table: pd.DataFrame, alpha: float) -> None:
    """BH over the whole family, in place (the units' own adjustment covered theirs)."""
    table["p_adjusted"] = adjust_pvalues(table["p_value"].to_numpy())
    table["significant"] = table["p_adjusted"] < alpha
