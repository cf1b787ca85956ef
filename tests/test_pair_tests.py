"""The comparison streams cell pair by cell pair and gives exactly the whole-run result.

The reference below is ``compare_sides`` as it was before it streamed (issue 14 item 3):
every record of each side in one DataFrame, one ``build_series`` per side, every test over
all matched cells at once. The streamed comparison must equal it exactly (row order and
float bits included), paired and unpaired, with unmatched cells and parameters, and hold at
most one cell per side in memory.
"""

from __future__ import annotations

import weakref
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from gradprobe.analysis.analyze import unit_work
from gradprobe.analysis.compare import sides
from gradprobe.analysis.compare.comparison import (
    PRIMARY_METRIC,
    CompareSettings,
    Comparison,
    compare_sides,
    judge,
)
from gradprobe.analysis.compare.matching import match_cells
from gradprobe.analysis.compare.pair_tests import cell_pairing, metric_tests, series_rows
from gradprobe.analysis.compare.presence import missing_tests, unrecorded_cells
from gradprobe.analysis.compare.sides import Side, load_side
from gradprobe.analysis.stats.series import build_series
from gradprobe.analysis.stats.structural import (
    ZERO_GRADIENT_METRICS,
    structural_rows,
    structurally_zero,
)
from gradprobe.bench.engine.metrics import LAYER_METRICS

FAST = CompareSettings(n_resamples=199)


def whole_run_compare(base: Side, run: Side, settings: CompareSettings
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(pairing, tests)`` as the all-in-memory comparison computed them."""
    base, run = base.in_memory(), run.in_memory()
    cells = match_cells(base.cell_table(), run.cell_table())
    metrics = list(settings.metrics)
    bs, rs = build_series(base.records, metrics), build_series(run.records, metrics)
    common = np.intersect1d(bs.seeds, rs.seeds)
    columns = (np.searchsorted(bs.seeds, common), np.searchsorted(rs.seeds, common))
    pairing = cell_pairing(bs, rs, cells, columns)
    rows = series_rows(bs, rs, cells).merge(pairing[["cell_base", "cell_run", "paired"]])
    structural = (structurally_zero(bs)[rows["i_base"].to_numpy()]
                  & structurally_zero(rs)[rows["i_run"].to_numpy()])
    rngs = np.random.default_rng(settings.seed).spawn(len(metrics))
    frames = []
    for metric, rng in zip(metrics, rngs, strict=True):
        keep = ~structural if metric in ZERO_GRADIENT_METRICS else np.ones(len(rows), bool)
        if metric in LAYER_METRICS:
            keep &= (rows["kind"] == "weight").to_numpy()
        frames.extend(metric_tests(metric, bs, rs, rows[keep].reset_index(drop=True), columns,
                                   rng=rng, n_resamples=settings.n_resamples,
                                   confidence=settings.confidence))
    tests = judge(pd.concat(frames, ignore_index=True), settings)
    recorded = set(base.records["cell_id"])
    missing = missing_tests(bs.keys, rs.keys, cells.pairs, cells.key,
                            unrecorded_cells(base.manifest, recorded), PRIMARY_METRIC)
    dead = structural_rows(rows[structural].drop(columns=["i_base", "i_run", "paired"]),
                           metrics)
    extra = [f for f in (missing, dead) if len(f)]
    return pairing, pd.concat([tests, *extra], ignore_index=True) if extra else tests


def assert_same(streamed: Comparison, reference: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    pairing, tests = reference
    pd.testing.assert_frame_equal(streamed.pairing, pairing, check_exact=True)
    pd.testing.assert_frame_equal(streamed.tests, tests, check_exact=True)


@pytest.mark.parametrize("variant", ["gain", "deeper", "plain"])
def test_streamed_comparison_equals_the_whole_run_one(smoke_run, smoke_variants, variant):
    """Paired cells; unmatched cells and layers (depths 3-5 vs 2-4); an ignored axis
    (residual) with BASE's residual cells missing."""
    base, run = load_side(smoke_run, "BASE"), load_side(smoke_variants[variant], "RUN")
    assert base.records is None and run.records is None  # read cell by cell from the files
    streamed = compare_sides(base, run, FAST)
    assert_same(streamed, whole_run_compare(base, run, FAST))
    assert (streamed.tests["verdict"] == "missing").any() == (variant != "gain")


def test_cell_by_cell_equals_the_whole_run_unpaired_with_gaps(wide_smoke):
    """Disjoint seeds (unpaired), a seed missing from one cell, a parameter lost."""
    side = load_side(wide_smoke, "BASE").in_memory()
    base, run = side.with_seeds(range(16)), side.with_seeds(range(16, 40))
    records = run.records
    first = records["cell_id"].iloc[0]
    gap = (records["cell_id"] == first) & (records["seed"] == 20)
    lost = (records["cell_id"] == records["cell_id"].iloc[-1]) & (
        records["param"] == "layers.1.weight")
    run = replace(run, records=records[~gap & ~lost].reset_index(drop=True))
    streamed = compare_sides(base, run, FAST)
    assert not streamed.pairing["paired"].any()
    assert (streamed.tests["verdict"] == "missing").sum() == 1
    assert_same(streamed, whole_run_compare(base, run, FAST))


class LoadedCells:
    """Counts the cells whose series a comparison holds at once, and the columns read."""

    def __init__(self) -> None:
        self.live = self.most = 0
        self.reads: list[str] = []
        self.columns: list[list[str] | None] = []

    def series(self, cell_series):
        def counted(side, cell_id, metrics):
            series = cell_series(side, cell_id, metrics)
            self.reads.append(cell_id)
            self.live += 1
            self.most = max(self.most, self.live)
            weakref.finalize(series, self._released)
            return series

        return counted

    def table(self, read_table):
        def recorded(path, columns=None):
            self.columns.append(columns)
            return read_table(path, columns)

        return recorded

    def _released(self) -> None:
        self.live -= 1


def test_the_comparison_holds_one_cell_per_side(smoke_run, smoke_variants, monkeypatch):
    loaded = LoadedCells()
    monkeypatch.setattr(Side, "cell_series", loaded.series(Side.cell_series))
    monkeypatch.setattr(unit_work, "read_table", loaded.table(unit_work.read_table))
    monkeypatch.setattr(sides, "read_table", loaded.table(sides.read_table))
    result = compare_sides(load_side(smoke_run, "BASE"),
                           load_side(smoke_variants["gain"], "RUN"), FAST)
    assert len(loaded.reads) == 2 * len(result.cells.pairs) == 24
    assert loaded.most == 2 and loaded.live == 0
    needed = {"seed", "param", "layer", "kind", "numel", "init_fingerprint",
              *FAST.metrics}
    assert all(c is not None and set(c) <= needed for c in loaded.columns)
