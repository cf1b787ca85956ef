"""Analysis tables on a planted-effect fixture and on a real smoke run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gradprobe.analysis.analyze import TABLES, load_analysis
from gradprobe.analysis.stats.effects import paired_effects
from gradprobe.analysis.stats.series import Series
from gradprobe.analysis.stats.summary import describe
from gradprobe.analysis.stats.trends import depth_trends, layer_contrasts
from gradprobe.core.errors import UserError


def planted_series(n_seeds: int = 24) -> Series:
    """Two depths x plain/residual, one weight per layer, with known log-normal values:
    residual is exactly 100x plain in every seed, and each extra layer divides by 10."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.2, size=n_seeds)
    keys, values = [], []
    for depth in (2, 3):
        for residual in (False, True):
            for layer in range(depth):
                keys.append({"cell_id": f"d{depth}r{int(residual)}", "depth": depth,
                             "residual": residual, "param": f"layers.{layer}.weight",
                             "layer": layer, "kind": "weight", "numel": 4, "n_layers": depth})
                values.append(10.0 ** (-depth + 2 * residual + noise))
    matrix = np.array(values)
    prints = np.tile(np.array([f"{s:016x}" for s in range(n_seeds)], dtype=object),
                     (len(keys), 1))
    metrics = {"grad_mean_abs": matrix, "grad_l2": matrix * 2, "grad_max_abs": matrix * 3,
               "act_rms": matrix, "grad_act_rms": matrix, "weight_l2": np.ones_like(matrix)}
    return Series(pd.DataFrame(keys), np.arange(n_seeds), metrics, prints,
                  np.ones(matrix.shape, dtype=bool))


def test_describe_hand_computed_geometric_mean():
    series = planted_series()
    table = describe(series, rng=np.random.default_rng(1), n_resamples=299)
    row = table[(table["cell_id"] == "d2r0") & (table["metric"] == "grad_mean_abs")].iloc[0]
    # geometric mean = 10 ** mean(log10 x); the planted values are 10 ** (-2 + noise)
    expected = 10 ** np.mean(np.log10(series.values["grad_mean_abs"][0]))
    assert row["geo_mean"] == pytest.approx(expected)
    assert 0.005 < row["geo_mean"] < 0.02
    assert row["ci_low"] <= row["geo_mean"] <= row["ci_high"]
    assert row["n_used"] == row["n_seeds"] == 24 and row["n_zero"] == 0


def test_paired_effect_recovers_planted_ratio_exactly():
    effects = paired_effects(planted_series())
    grad = effects[effects["metric"] == "grad_mean_abs"]
    assert len(grad) == 5  # 2 + 3 layers
    assert grad["ratio"].to_numpy() == pytest.approx(100.0)
    # identical log ratio in every seed: the interval collapses onto it
    assert grad["ci_low"].to_numpy() == pytest.approx(100.0)
    assert grad["same_initial_weights"].all()
    assert (grad["p_adjusted"] < 0.05).all() and grad["significant"].all()


def test_layer_metrics_are_tested_once_per_layer():
    """Bug: act_rms and grad_act_rms (one value per layer) were tested on every parameter of
    the layer, repeating one test in the Benjamini-Hochberg family."""
    series = planted_series()
    bias_keys = series.keys.assign(param=series.keys["param"].str.replace("weight", "bias"),
                                   kind="bias")
    keys = pd.concat([series.keys, bias_keys], ignore_index=True)
    doubled = Series(keys, series.seeds, {k: np.vstack([v, v]) for k, v in series.values.items()},
                     np.vstack([series.fingerprints] * 2), np.vstack([series.present] * 2))
    effects = paired_effects(doubled)
    counts = effects.groupby("metric").size()
    assert counts["grad_mean_abs"] == 10 and counts["act_rms"] == counts["grad_act_rms"] == 5
    assert (effects[effects["metric"] == "act_rms"]["kind"] == "weight").all()


def test_pairs_with_a_zero_control_enter_the_signed_rank_test():
    series = planted_series()
    plain = 0  # first row: depth 2, plain, layer 0; row 2 is its residual partner
    series.values["grad_mean_abs"][plain, :20] = 0.0  # 20 dead plain seeds of 24
    effects = paired_effects(series)
    row = effects[(effects["metric"] == "grad_mean_abs") & (effects["cell_control"] == "d2r0")
                  & (effects["layer"] == 0)].iloc[0]
    assert (row["n_pairs"], row["n_excluded"], row["n_one_side_zero"]) == (4, 20, 20)
    # all 24 signs positive, the 20 dead-control pairs tied above the 4 finite ones (ties:
    # scipy's normal approximation). From the 4 finite pairs alone p would be 0.125.
    values = series.values["grad_mean_abs"]
    finite = np.log10(values[2, 20:]) - np.log10(values[plain, 20:])
    expected = stats.wilcoxon(np.r_[np.full(20, 1e6), finite]).pvalue
    assert row["p_value"] == pytest.approx(expected) and row["p_value"] < 1e-4
    assert row["ratio"] == pytest.approx(100.0)


def test_depth_slope_recovers_planted_factor():
    trends = depth_trends(planted_series(), rng=np.random.default_rng(3), n_resamples=299)
    first = trends[(trends["metric"] == "grad_mean_abs") & (trends["role"] == "first")]
    assert first["slope"].to_numpy() == pytest.approx([-1.0, -1.0])
    assert first["factor_per_layer"].to_numpy() == pytest.approx([0.1, 0.1])


def test_layer_contrast_is_one_when_layers_are_equal():
    contrasts = layer_contrasts(planted_series())
    grad = contrasts[contrasts["metric"] == "grad_mean_abs"]
    assert grad["ratio"].to_numpy() == pytest.approx(1.0)
    assert (grad["p_value"] == 1.0).all() and not grad["significant"].any()


def test_zero_seeds_are_counted_not_dropped_silently():
    series = planted_series()
    series.values["grad_mean_abs"][0, :5] = 0.0
    series.values["grad_mean_abs"][0, 5] = np.inf
    series.values["grad_mean_abs"][0, 6] = np.nan  # a NaN gradient: present, non-finite
    series.values["grad_mean_abs"][0, 7] = np.nan  # a missing seed
    series.present[0, 7] = False
    row = describe(series, rng=np.random.default_rng(5), n_resamples=199).iloc[0]
    assert (row["n_seeds"], row["n_used"], row["n_zero"], row["n_nonfinite"]) == (23, 16, 5, 2)


def test_smoke_analysis_files(smoke_analysis):
    run_dir = smoke_analysis.run_dir
    for name in TABLES:
        assert (run_dir / "analysis" / f"{name}.parquet").is_file()
    loaded = load_analysis(run_dir)
    pd.testing.assert_frame_equal(loaded.summary, smoke_analysis.summary)
    assert loaded.meta["settings"]["n_resamples"] == 499
    effects = loaded.effects
    first = effects[(effects["metric"] == "grad_mean_abs") & (effects["layer"] == 0)]
    assert len(first) == 6 and first["same_initial_weights"].all()
    assert (first["ratio"] > 1).all()  # skips raise the first-layer gradient in every cell


def test_analysis_is_reproducible(smoke_run, tmp_path):
    import shutil

    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run

    copy = tmp_path / "copy"
    shutil.copytree(smoke_run, copy)
    settings = AnalysisSettings(n_resamples=199, seed=11)
    a = analyze_run(copy, settings=settings).effects
    b = analyze_run(copy, settings=settings).effects
    pd.testing.assert_frame_equal(a, b)


def test_unanalysed_run_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="not analysed yet"):
        load_analysis(tmp_path)


def test_killed_reanalysis_leaves_the_previous_analysis_whole(smoke_run, tmp_path,
                                                              monkeypatch):
    """Bug (issue 14, item 10): a re-analysis killed before ``analysis.json`` was written
    left the new tables (100 resamples) under the old ``analysis.json`` ("4999 resamples")."""
    import shutil

    from gradprobe.analysis import analyze as analyze_module
    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis"))
    analyze_run(run, settings=AnalysisSettings(n_resamples=199))
    first = load_analysis(run)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # every table is written by now; analysis.json is not

    monkeypatch.setattr(analyze_module, "write_json_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        analyze_run(run, settings=AnalysisSettings(n_resamples=100, seed=5))
    loaded = load_analysis(run)
    assert loaded.meta["settings"]["n_resamples"] == 199
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(first, name))
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".analysis")) == []


def test_leftovers_of_a_killed_analysis_are_removed(smoke_run, tmp_path):
    """A SIGKILL runs no clean-up: the hidden directory of a dead writer goes next time."""
    import shutil

    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis"))
    dead = run / ".analysis.999999999.tmp"  # above any Linux pid_max: no such process
    dead.mkdir()
    (dead / "summary.parquet").write_text("half")
    analyze_run(run, settings=AnalysisSettings(n_resamples=100))
    assert not dead.exists() and (run / "analysis" / "analysis.json").is_file()


def test_staleness_includes_the_settings(smoke_run, tmp_path):
    """Item 10: an analysis computed with other settings is stale for the settings asked."""
    import shutil

    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run, is_stale
    from gradprobe.bench.store.manifest import read_manifest

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis"))
    settings = AnalysisSettings(n_resamples=100)
    meta = analyze_run(run, settings=settings).meta
    manifest = read_manifest(run)
    assert not is_stale(run, meta, manifest)
    assert not is_stale(run, meta, manifest, settings)
    assert is_stale(run, meta, manifest, AnalysisSettings(n_resamples=100, seed=1))
    assert is_stale(run, meta, manifest, AnalysisSettings())
    # Version 3 analyses hold paired ratios as means of log ratios, not medians: redone.
    assert is_stale(run, {**meta, "analysis_version": 3}, manifest, settings)


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_analysis_on_other_executors_equals_local(smoke_run, smoke_analysis, tmp_path,
                                                  executor):
    """Issue 14 item 3: the per-cell work runs on the sweep's executors, same tables."""
    import shutil

    from gradprobe.analysis.analyze import analyze_run

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis"))
    settings = smoke_analysis.meta["settings"]
    from gradprobe.analysis.analyze import AnalysisSettings

    ours = analyze_run(run, settings=AnalysisSettings(**settings), executor=executor,
                       workers=2)
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(ours, name), getattr(smoke_analysis, name),
                                      check_exact=True, obj=name)
    assert ours.meta["executor"] == {"name": executor, "workers": 2, "scheduler": None,
                                     "units": 16}


def test_executor_options_are_checked_before_reading_the_run(tmp_path):
    from gradprobe.analysis.analyze import analyze_run

    with pytest.raises(UserError, match="--workers 2: only used with --executor processes"):
        analyze_run(tmp_path / "absent", workers=2)
