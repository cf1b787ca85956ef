"""One unit of the analysis at a time: memory bounded by a cell or a pair, not the run."""

from __future__ import annotations

import shutil
import weakref

import numpy as np
import pandas as pd
import pyarrow as pa

from gradprobe.analysis.analyze import AnalysisSettings, analyze_run, unit_work
from gradprobe.analysis.stats.series import build_series, cell_series
from gradprobe.bench.store.records import ANALYSIS_METRICS


class LoadedCells:
    """Counts the cells whose full records (every analysis metric) are held at once."""

    def __init__(self) -> None:
        self.live = 0
        self.most = 0
        self.reads: list[str] = []

    def wrap(self, read_cell):
        def counted(cell, metrics, fingerprints=False):
            series = read_cell(cell, metrics, fingerprints)
            if tuple(metrics) == ANALYSIS_METRICS:
                self.reads.append(cell["cell_id"])
                self.live += 1
                self.most = max(self.most, self.live)
                weakref.finalize(series, self._released)
            return series

        return counted

    def _released(self) -> None:
        self.live -= 1


def test_the_analysis_holds_at_most_one_pair_of_cells(smoke_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis"))
    loaded = LoadedCells()
    monkeypatch.setattr(unit_work, "read_cell", loaded.wrap(unit_work.read_cell))
    analyze_run(run, settings=AnalysisSettings(n_resamples=100))
    assert sorted(loaded.reads) == sorted(p.stem.removeprefix("cell-")
                                          for p in (run / "records").iterdir())
    assert loaded.most == 2 and loaded.live == 0


def test_cross_cell_units_read_only_the_columns_they_need(smoke_run, monkeypatch):
    """A depth group reads five metrics of each cell, never the fingerprints."""
    from gradprobe.analysis.analyze.work_plan import plan_units
    from gradprobe.bench.store.manifest import read_manifest

    asked = []

    def read_table(path, columns=None):
        asked.append(columns)
        return real(path, columns)

    real = unit_work.read_table
    monkeypatch.setattr(unit_work, "read_table", read_table)
    _, units = plan_units(smoke_run, read_manifest(smoke_run))
    depth = next(u for u in units if u.kind == "depth")
    result = unit_work.analyse_unit(unit_work.unit_payload(
        "depth", list(depth.cells), {"seed": 0, "n_resamples": 100, "confidence": 0.95}))
    assert len(result["trends"]) == 10  # 5 metrics x first/output layer
    assert all(c is not None and "init_fingerprint" not in c and len(c) == 10 for c in asked)


def test_cell_series_equals_the_pivot_of_the_records_in_any_row_order():
    rng = np.random.default_rng(1)
    seeds, params = [3, 1, 2], ["layers.1.weight", "layers.0.bias", "layers.0.weight"]
    rows = [{"seed": s, "param": p, "layer": int(p[7]), "kind": p.split(".")[-1],
             "numel": 4, "init_fingerprint": f"{s:016x}",
             **{m: float(rng.lognormal()) for m in ANALYSIS_METRICS}}
            for s in seeds for p in params][:-1]  # seed 2 lacks its last parameter
    order = rng.permutation(len(rows))
    table = pa.Table.from_pylist([rows[i] for i in order])
    ours = cell_series(table, "c1", {"depth": 2, "residual": False})
    records = pd.DataFrame(rows).assign(cell_id="c1", depth=2, residual=False)
    theirs = build_series(records)
    assert ours.keys["param"].tolist() == theirs.keys["param"].tolist() == [
        "layers.0.bias", "layers.0.weight", "layers.1.weight"]
    assert ours.seeds.tolist() == theirs.seeds.tolist() == [1, 2, 3]
    for metric in ANALYSIS_METRICS:
        np.testing.assert_array_equal(ours.values[metric], theirs.values[metric])
    np.testing.assert_array_equal(ours.present, theirs.present)
    assert not ours.present[1, 1] and pd.isna(ours.fingerprints[1, 1])  # seed 2, layer 0


def test_a_units_generator_depends_on_its_cells_not_on_its_turn():
    settings = {"seed": 7}
    a, b = [{"cell_id": "aaaa"}], [{"cell_id": "bbbb"}]
    first = unit_work.unit_rng(settings, "summary", a).random()
    unit_work.unit_rng(settings, "summary", b).random()
    assert unit_work.unit_rng(settings, "summary", a).random() == first
    assert unit_work.unit_rng(settings, "effects", a).random() != first
    assert unit_work.unit_rng({"seed": 8}, "summary", a).random() != first
