"""Compare: planted changes are flagged, A/A runs are not, pairing falls back honestly."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gradprobe.analysis.compare.comparison import CompareSettings, compare_sides
from gradprobe.analysis.compare.sides import load_side
from gradprobe.analysis.stats.median_interval import sign_interval_weights
from gradprobe.core.errors import UserError

FAST = CompareSettings(n_resamples=199)


def compare(base, run, settings=FAST):
    return compare_sides(load_side(base, "BASE") if not hasattr(base, "records") else base,
                         load_side(run, "RUN") if not hasattr(run, "records") else run,
                         settings)


def scaled(side, factor, metrics=("grad_mean_abs",)):
    """The side with ``metrics`` multiplied by ``factor`` in every record."""
    records = side.in_memory().records.copy()
    for metric in metrics:
        records[metric] = records[metric] * factor
    return replace(side, records=records)


@pytest.mark.parametrize("variant,key", [("gain", "model.init_gain"),
                                         ("tanh", "model.activation")])
def test_planted_change_is_flagged_and_named(smoke_run, smoke_variants, variant, key):
    result = compare(smoke_run, smoke_variants[variant])
    assert result.regressed
    assert [d["key"] for d in result.config_differences] == [key]
    assert len(result.cells.pairs) == 12 and result.cells.base_only.empty
    assert result.pairing["paired"].all()
    weights = result.tests[(result.tests["metric"] == "weight_l2")]
    if variant == "gain":
        # Every initial weight is multiplied by 1.05: the paired ratio is 1.05 exactly.
        assert np.allclose(weights["ratio"], 1.05, rtol=1e-6)
        assert (weights["verdict"] == "regressed").all()
    else:
        # The activation does not touch the initial weights: unchanged, and shown so.
        assert (weights["verdict"] == "unchanged").all()


def test_residual_on_vs_off_pairs_cells_and_reports_the_difference(smoke_variants):
    result = compare(smoke_variants["plain"], smoke_variants["residual"])
    assert result.regressed
    assert {d["key"] for d in result.config_differences} == {"model.residual"}
    assert "residual" in result.cells.ignored and len(result.cells.pairs) == 6
    first = result.tests[(result.tests["param"] == "layers.0.weight")
                         & (result.tests["metric"] == "grad_mean_abs")
                         & (result.tests["test"] == "ratio")]
    assert (first["ci_low"] > 1).all() and (first["verdict"] == "regressed").all()
    assert first["ratio"].max() > 100  # the blog's effect: skips lift early gradients


def test_preferred_direction_makes_it_improved(smoke_run, smoke_variants):
    run = load_side(smoke_variants["gain"], "RUN")
    settings = replace(FAST, prefer=(("weight_l2", "higher"),))
    result = compare_sides(load_side(smoke_run, "BASE"), run, settings)
    weights = result.tests[result.tests["metric"] == "weight_l2"]
    assert (weights["verdict"] == "improved").all()
    assert result.regressed  # the gradients still moved, with no preference declared


def test_identical_runs_are_unchanged_everywhere(smoke_run):
    result = compare(smoke_run, smoke_run)
    assert set(result.tests["verdict"]) == {"unchanged"}
    assert result.config_differences == [] and not result.regressed


def test_last_bit_differences_are_not_flagged(smoke_run):
    """Another CPU may round differently: a systematic 1e-6 relative change is detected
    by the paired test (tiny p) but lies inside the tolerance band."""
    base = load_side(smoke_run, "BASE")
    metrics = ("grad_mean_abs", "grad_l2", "grad_max_abs", "act_rms", "grad_act_rms")
    result = compare(base, scaled(base, 1 + 1e-6, metrics))
    assert set(result.tests["verdict"]) == {"unchanged"}
    assert result.tests["p_adjusted"].min() < 0.05


def test_paired_ratio_hand_computed(smoke_run):
    base = load_side(smoke_run, "BASE")
    records = base.in_memory().records.copy()
    # Seed s is scaled by 2 ** (1 + s**2 / 1000): distinct positive log ratios whose median
    # over seeds 0..15 (mean of s = 7 and 8: 56.5 / 1000) differs from their mean (77.5 /
    # 1000); the paired ratio is the median seed's, 2 ** 1.0565.
    records["grad_mean_abs"] *= 2.0 ** (1 + records["seed"] ** 2 / 1000)
    result = compare(base, replace(base, records=records))
    rows = result.tests[(result.tests["metric"] == "grad_mean_abs")
                        & (result.tests["test"] == "ratio") & (result.tests["n_used"] == 16)]
    assert len(rows) > 20
    assert np.allclose(rows["ratio"], 2**1.0565, rtol=1e-12)
    # The sign-test interval at 16 seeds interpolates between X(4) and X(5) (s = 3 and 4).
    d, weight = sign_interval_weights(16)
    assert d == 4
    assert np.allclose(rows["ci_low"], 2 ** (1 + ((1 - weight) * 9 + weight * 16) / 1000))
    assert np.allclose(rows["ci_high"], 2 ** (1 + ((1 - weight) * 144 + weight * 121) / 1000))
    # 16 positive differences without ties: exact two-sided Wilcoxon p = 2 / 2**16.
    assert np.allclose(rows["p_value"], 2 / 2**16)
    assert (rows["verdict"] == "regressed").all()


def test_aa_disjoint_seeds_not_flagged_in_19_of_20(wide_smoke):
    side = load_side(wide_smoke, "BASE")
    flagged = 0
    for rep in range(20):
        a = side.with_seeds(range(32 * rep, 32 * rep + 16))
        b = side.with_seeds(range(32 * rep + 16, 32 * rep + 32))
        result = compare_sides(a, b, FAST)
        assert (result.pairing["paired"] == False).all()  # noqa: E712
        flagged += int(result.regressed)
    assert flagged <= 1


def test_different_seeds_fall_back_to_unpaired_with_a_note(wide_smoke):
    side = load_side(wide_smoke, "BASE")
    result = compare_sides(side.with_seeds(range(16)), side.with_seeds(range(16, 32)), FAST)
    assert set(result.tests["pairing"]) == {"unpaired"}
    assert all("no seed in common" in n for n in result.pairing["note"])
    assert {d["key"] for d in result.config_differences} == {"sweep.seeds"}
    # Hand check of one unpaired ratio: 10 ** (mean log10 RUN - mean log10 BASE).
    row = result.tests[(result.tests["metric"] == "grad_l2")].iloc[0]
    records = side.in_memory().records
    cell = records[records["cell_id"] == row["cell_run"]]
    cell = cell[(cell["param"] == row["param"]) & (cell["seed"] < 32)]
    logs = np.log10(cell.set_index("seed")["grad_l2"])
    expected = 10 ** (logs.loc[16:31].mean() - logs.loc[0:15].mean())
    assert row["ratio"] == pytest.approx(expected, rel=1e-12)
    assert row["ci_low"] <= row["ratio"] <= row["ci_high"]


def test_partly_overlapping_seeds_pair_on_the_common_ones(wide_smoke):
    side = load_side(wide_smoke, "BASE")
    result = compare_sides(side.with_seeds(range(16)), side.with_seeds(range(8, 24)), FAST)
    assert result.pairing["paired"].all()
    assert (result.pairing["n_common"] == 8).all()
    assert "16 seeds run on one side only are not used" in result.pairing["note"].iloc[0]


def test_changed_fingerprints_fall_back_to_unpaired(smoke_run):
    """A PyTorch whose RNG stream changed starts the same seeds elsewhere."""
    base = load_side(smoke_run, "BASE")
    records = base.in_memory().records.copy()
    records["init_fingerprint"] = records["init_fingerprint"].str[::-1]
    result = compare(base, replace(base, records=records))
    assert not result.pairing["paired"].any()
    assert "fingerprints differ on 16 of 16 common seeds" in result.pairing["note"].iloc[0]


def test_a_baseline_fingerprinted_with_sha256_is_unpaired_and_says_why(smoke_run):
    """Baselines saved before the XXH3 fingerprints hold 16 hex digits of SHA-256: the same
    weights, but nothing can prove it. The note must not blame the weights."""
    base = load_side(smoke_run, "BASE").in_memory()
    records = base.records.copy()
    records["init_fingerprint"] = records["init_fingerprint"].str[-16:]  # the old format
    result = compare(replace(base, records=records), base)
    assert not result.pairing["paired"].any()
    note = result.pairing["note"].iloc[0]
    assert "fingerprint initial weights differently (sha256 vs xxh3" in note
    assert "save the baseline again" in note and "PyTorch whose RNG" not in note


def test_mismatched_cells_are_listed_not_crashed_on(smoke_run, smoke_variants):
    result = compare(smoke_run, smoke_variants["deeper"])
    assert len(result.cells.pairs) == 8
    assert set(result.cells.base_only["depth"]) == {2}
    assert set(result.cells.run_only["depth"]) == {5}
    assert {d["key"] for d in result.config_differences} == {"model.depth"}


def test_no_common_cell_is_a_user_error(smoke_variants, smoke_run):
    base = load_side(smoke_run, "BASE")
    records = base.in_memory().records.copy()
    records["width"] = records["width"] + 1000
    records.loc[records["depth"] == 2, "width"] = 7  # width now varies: no longer ignored
    with pytest.raises(UserError, match="no cell in common"):
        compare(base, replace(base, records=records))


def test_new_nonfinite_values_regress(smoke_run):
    base = load_side(smoke_run, "BASE")
    records = base.in_memory().records.copy()
    hit = (records["seed"] == 3) & (records["param"] == "layers.0.weight")
    records.loc[hit, "grad_l2"] = np.nan
    result = compare(base, replace(base, records=records))
    bad = result.tests[(result.tests["metric"] == "grad_l2") & (result.tests["run_nonfinite"] > 0)]
    assert len(bad) == hit.sum() and (bad["verdict"] == "regressed").all()
    assert "non-finite in 1 RUN seeds" in bad["reason"].iloc[0]


def test_more_zero_seeds_are_tested_and_regress(smoke_run):
    base = load_side(smoke_run, "BASE")
    records = base.in_memory().records.copy()
    target = records["cell_id"].iloc[0]
    hit = (records["cell_id"] == target) & (records["param"] == "layers.0.weight")
    records.loc[hit, ["grad_mean_abs", "grad_l2", "grad_max_abs"]] = 0.0
    result = compare(base, replace(base, records=records))
    zero = result.tests[(result.tests["test"] == "zero_fraction")
                        & (result.tests["verdict"] != "unchanged")]
    assert len(zero) == 1
    row = zero.iloc[0]
    assert (row["base_zero"], row["run_zero"]) == (0, 16)
    assert row["p_value"] == pytest.approx(2 / 2**16)  # exact McNemar: 16 discordant pairs
    assert row["verdict"] == "regressed"


def test_bh_families_are_fixed_in_advance(smoke_run, smoke_variants):
    """Regression (issue 14, item 15): zero-fraction tests entered the one family only
    where zero counts differed, and grad_mean_abs, grad_l2 and grad_max_abs were adjusted
    together as if independent. Now the gate family is the primary metric's ratio and
    zero-fraction test of every matched parameter, whatever the data; every secondary
    metric is its own family."""
    from scipy.stats import false_discovery_control

    from gradprobe.analysis.compare.comparison import PRIMARY_METRIC

    results = [compare(smoke_run, smoke_variants["gain"]), compare(smoke_run, smoke_run)]
    sizes = []
    for result in results:
        tests = result.tests
        gate = tests[tests["family"] == "gate"]
        assert set(gate["metric"]) == {PRIMARY_METRIC} and gate["gate"].all()
        assert sorted(gate["test"].value_counts().tolist()) == [36, 36]  # 36 parameters
        for _, family in tests.groupby("family"):
            p = family["p_value"].fillna(1.0).to_numpy()
            finite = family["p_value"].notna().to_numpy()
            assert np.allclose(family["p_adjusted"].to_numpy()[finite],
                               false_discovery_control(p)[finite])
        sizes.append(tests["family"].value_counts().sort_index().tolist())
        assert not tests.loc[tests["family"] != "gate", "gate"].any()
    assert sizes[0] == sizes[1]  # the same families with and without a change


def test_settings_from_run_config_and_flags(smoke_run, tmp_path):
    from support import run_text, smoke_text

    from gradprobe.analysis.compare.comparison import DEFAULT_TOLERANCE, settings_for

    run_dir = run_text(tmp_path / "r", smoke_text(
        extra='\n[compare]\nprefer = { grad_mean_abs = "higher" }\ntolerance = 1.05\n'))
    run = load_side(run_dir, "RUN")
    assert settings_for(run).tolerance == 1.05
    assert settings_for(run, tolerance=1.2).tolerance == 1.2
    assert settings_for(load_side(smoke_run, "RUN")).tolerance == DEFAULT_TOLERANCE
    assert settings_for(run).prefer_sign("grad_mean_abs") == 1
    with pytest.raises(UserError, match=r"--tolerance 0\.5"):
        settings_for(run, tolerance=0.5)


def test_depth_compared_on_purpose_lists_layers_on_one_side(smoke_run, tmp_path):
    from support import run_text, smoke_text

    shallow = run_text(tmp_path / "d2", smoke_text(depth="[2]"))
    deep = run_text(tmp_path / "d3", smoke_text(depth="[3]"))
    result = compare(shallow, deep)
    assert {d["key"] for d in result.config_differences} == {"model.depth"}
    assert len(result.cells.pairs) == 4
    # Depth changes the initial draw: unpaired, and layers.2 exists in RUN only.
    assert not result.pairing["paired"].any()
    assert all("not compared (on one side only): layers.2.weight" in n
               for n in result.pairing["note"])
    assert set(result.tests["param"]) == {"layers.0.weight", "layers.1.weight"}
