"""The streamed analysis gives exactly the tables of one pivot of all records.

The reference below is the whole-run analysis as it was before it streamed (issue 14 item
3): every record in one DataFrame, one ``build_series``, every statistic over it. The
streamed tables must equal it exactly (row order and float bits included), on a complete
run and on one with cells missing (unpaired cells, depth groups with a gap).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from gradprobe.analysis.analyze import AnalysisSettings, analyze_run
from gradprobe.analysis.analyze.assembly import SeedUnion, ordered
from gradprobe.analysis.stats.device_agreement import (
    agreement_table,
    device_agreement,
    merge_differences,
    relative_differences,
)
from gradprobe.analysis.stats.effects import paired_effects
from gradprobe.analysis.stats.series import build_series
from gradprobe.analysis.stats.summary import describe
from gradprobe.analysis.stats.theory import predicted_slopes
from gradprobe.analysis.stats.trends import depth_trends, layer_contrasts
from gradprobe.analysis.stats.width_scaling import width_exponents
from gradprobe.bench.store.records import read_records

STREAMED = ("summary", "effects", "trends", "contrasts", "width")


def whole_run_tables(run_dir, settings: AnalysisSettings) -> dict[str, pd.DataFrame]:
    """The tables as the all-in-memory analysis computed them."""
    series = build_series(read_records(run_dir))
    rngs = np.random.default_rng(settings.seed).spawn(6)
    n, level, alpha = settings.n_resamples, settings.confidence, settings.alpha
    return {
        "summary": describe(series, rng=rngs[0], n_resamples=n, confidence=level),
        "effects": paired_effects(series, alpha=alpha, confidence=level),
        "trends": predicted_slopes(depth_trends(series, rng=rngs[2], n_resamples=n,
                                                confidence=level)),
        "contrasts": layer_contrasts(series, alpha=alpha, confidence=level),
        "width": width_exponents(series, rng=rngs[5], n_resamples=n, confidence=level),
    }


@pytest.fixture(scope="module")
def gappy_run(smoke_run, tmp_path_factory):
    """The smoke run without two cells: one residual cell (its plain cell is unpaired) and
    one plain cell at depth 2 (a depth group with two depths left)."""
    run = tmp_path_factory.mktemp("gappy") / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis"))
    axes = read_records(run, columns=["cell_id", "depth", "width", "residual"]
                        ).drop_duplicates("cell_id")
    drop = axes[((axes["depth"] == 4) & (axes["width"] == 16) & axes["residual"])
                | ((axes["depth"] == 2) & (axes["width"] == 8) & ~axes["residual"])]
    for cell_id in drop["cell_id"]:
        (run / "records" / f"cell-{cell_id}.parquet").unlink()
    return run


@pytest.mark.parametrize("which", ["smoke_run", "gappy_run"])
def test_streamed_tables_equal_the_whole_run_analysis(which, request, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(request.getfixturevalue(which), run,
                    ignore=shutil.ignore_patterns("analysis"))
    settings = AnalysisSettings(n_resamples=199)
    streamed = analyze_run(run, settings=settings)
    reference = whole_run_tables(run, settings)
    for name in STREAMED:
        pd.testing.assert_frame_equal(getattr(streamed, name), reference[name],
                                      check_exact=True, obj=name)
    assert streamed.meta["run"]["seeds"] == 16
    assert len(streamed.effects) and len(streamed.trends) and len(streamed.width)


def test_device_agreement_merged_from_groups_equals_all_at_once():
    rng = np.random.default_rng(3)
    rows = []
    for depth in (2, 3):
        for device in ("cpu", "cuda:0", "cuda:1"):
            for seed in range(5):
                value = float(rng.lognormal())
                rows.append({"depth": depth, "device": device, "dtype": "float32",
                             "seed": seed, "param": "p",
                             **{m: value * (1 + 1e-6 * rng.normal()) for m in
                                ("grad_mean_abs", "grad_l2", "grad_max_abs", "act_rms",
                                 "grad_act_rms")}})
    records = pd.DataFrame(rows)
    groups = [relative_differences(part) for _, part in records.groupby("depth")]
    pd.testing.assert_frame_equal(agreement_table(merge_differences(groups)),
                                  device_agreement(records), check_exact=True)


def test_rows_come_back_in_the_sort_keys_order():
    units = [pd.DataFrame({"x": [3, 4], "_metric": [1, 1], "_rank": [0, 1]}),
             pd.DataFrame(), pd.DataFrame({"x": [1, 2], "_metric": [0, 0], "_rank": [5, 2]})]
    assert ordered(units)["x"].tolist() == [2, 1, 3, 4]
    assert list(ordered(units).columns) == ["x"]


def test_run_seeds_are_the_union_of_the_cells_seeds():
    union = SeedUnion()
    results = [{"seeds": {"a": np.array([0, 1, 2]), "c": np.array([7])}},
               {"seeds": {"b": np.array([2, 5])}}, {"trends": pd.DataFrame()}]
    for index, result in enumerate(results):
        union.add(index, result)
    assert union.seeds.tolist() == [0, 1, 2, 5, 7]
    assert all("seeds" not in r for r in results)  # the driver keeps no per-cell arrays


def test_settings_travel_as_plain_data():
    """Unit payloads cross process boundaries: the settings must be a JSON-able dict."""
    import json

    assert json.loads(json.dumps(asdict(AnalysisSettings()))) == asdict(AnalysisSettings())
