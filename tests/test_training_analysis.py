"""Training statistics on hand-built trajectories with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradprobe.analysis.stats.training_stats import (
    build_runs,
    curve_steps,
    final_loss_effects,
    first_reach,
    gradient_curves,
    km_median,
    loss_curves,
    reach_tests,
    steps_to_reach,
)

INF = math.inf


def loss_frame(trajectories: dict[bool, np.ndarray], depth: int = 4) -> pd.DataFrame:
    """A training loss table: ``trajectories[residual]`` is ``(seeds, steps + 1)``."""
    rows = []
    for residual, losses in trajectories.items():
        for seed, row in enumerate(losses):
            for step, value in enumerate(row):
                rows.append({"cell_id": f"c{int(residual)}", "train_id": "t", "depth": depth,
                             "residual": residual, "steps": len(row) - 1, "log_every": 1,
                             "lr": 0.1, "seed": seed, "step": step, "loss_value": value,
                             "init_fingerprint": f"i{seed}", "task_fingerprint": f"t{seed}"})
    return pd.DataFrame(rows)


def test_first_reach_counts_steps_and_never_reaches_through_nan():
    loss = np.array([[1, 0.5, 0.3, 0.2], [1, 1, 1, 1], [1, np.nan, 0.1, 0.1],
                     [0.05, 1, 1, 1], [1, np.inf, np.inf, np.inf]])
    assert list(first_reach(loss, 0.3)) == [2, INF, 2, 0, INF]


def test_km_median_hand_computed():
    # 8 seeds, 2 never reach by step 20. KM: S = 7/8 after 5, 6/8 after 7, 4/8 after the
    # two events at 9: the median is 9. The log-log band at t=5 (Greenwood: 1/(8*7)) has
    # lower end 0.875 ** exp(1.96 * sqrt(1/56) / -log(0.875)) = 0.387 <= 0.5: the interval
    # starts at 5; its upper band never falls to 1/2 (0.558 at the end): no upper end.
    times = np.array([5, 7, 9, 9, 12, 15, INF, INF])
    se = math.sqrt(1 / 56) / -math.log(0.875)
    assert 0.875 ** math.exp(1.959964 * se) == pytest.approx(0.3870, abs=1e-4)
    assert km_median(times, 20) == (9.0, 5.0, INF)
    assert km_median(np.array([1, 2, 3, 4, 5.0]), 10)[0] == 3.0  # the sample median
    assert km_median(np.array([INF, INF, INF]), 10) == (INF, INF, INF)
    assert km_median(np.array([0.0, 0.0, 0.0]), 10) == (0.0, 0.0, 0.0)


def test_steps_to_reach_hand_computed():
    plain = np.array([[1, 0.8, 0.4, 0.1], [1, 0.9, 0.6, 0.45], [1, 1, 1, 1],
                      [1, 0.3, 0.2, np.nan]])
    runs = build_runs(loss_frame({False: plain}))
    table = steps_to_reach(runs, [0.5])
    row = table.iloc[0]
    assert (row["n_seeds"], row["n_reached"], row["n_diverged"]) == (4, 3, 1)
    # Wilson interval for 3 of 4 at 95%: (p + z2/2n -+ z sqrt(p(1-p)/n + z2/4n2)) / (1+z2/n)
    z, n, p = 1.959964, 4, 0.75
    centre, half = p + z**2 / (2 * n), z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert row["frac_low"] == pytest.approx((centre - half) / (1 + z**2 / n), rel=1e-5)
    assert row["frac_high"] == pytest.approx((centre + half) / (1 + z**2 / n), rel=1e-5)
    # Times 2, 3, never, 1: S = 3/4 after 1, 2/4 after 2: median 2.
    assert row["median_steps"] == 2.0 and row["last_step"] == 3


def test_sign_test_counts_who_gets_there_first():
    # Residual reaches 0.5 at step 1 in all 10 seeds, plain at step 2 in 9 and never in 1.
    steps = 4
    plain = np.tile([1.0, 0.9, 0.4, 0.3, 0.2], (10, 1))
    plain[9] = 1.0
    residual = np.tile([1.0, 0.4, 0.3, 0.2, 0.1], (10, 1))
    runs = build_runs(loss_frame({False: plain, True: residual}))
    (row,) = reach_tests(runs, [0.5]).to_dict("records")
    assert (row["n_pairs"], row["n_residual_first"], row["n_plain_first"], row["n_ties"]) == \
        (10, 10, 0, 0)
    assert row["p_value"] == pytest.approx(2 * 0.5**10)  # exact two-sided sign test
    assert row["significant"] and row["same_task"] and row["same_initial_weights"]
    assert len(runs.losses[0][0]) == steps + 1
    (tie,) = reach_tests(runs, [0.05]).to_dict("records")  # nobody gets there
    assert (tie["n_ties"], tie["p_value"], tie["significant"]) == (10, 1.0, False)


def test_sign_test_p_value_is_never_zero_at_thousands_of_seeds():
    """Regression (issue 14, item 14, a relative): the exact sign test of 1100 seeds that
    all reach the target first on the residual side underflowed to p = 0."""
    from gradprobe.analysis.stats.estimators import P_FLOOR

    plain = np.tile([1.0, 0.9, 0.4], (1100, 1))
    residual = np.tile([1.0, 0.4, 0.3], (1100, 1))
    (row,) = reach_tests(build_runs(loss_frame({False: plain, True: residual})),
                         [0.5]).to_dict("records")
    assert row["n_residual_first"] == 1100 and row["p_value"] == P_FLOOR


def test_final_loss_ratio_paired_by_seed():
    rng = np.random.default_rng(0)
    plain = np.exp(rng.normal(size=(12, 3)))
    runs = build_runs(loss_frame({False: plain, True: plain * 10}))
    (row,) = final_loss_effects(runs).to_dict("records")
    assert row["ratio"] == pytest.approx(10) and row["ci_low"] == pytest.approx(10)
    assert row["n_pairs"] == 12 and row["p_value"] == pytest.approx(2 / 2**12)


def test_loss_curves_geometric_mean_and_divergence():
    plain = np.array([[1.0, 0.1], [1.0, 0.001], [1.0, np.inf], [1.0, np.nan]])
    curves = loss_curves(build_runs(loss_frame({False: plain})),
                         rng=np.random.default_rng(0), n_resamples=199)
    start, end = curves.iloc[0], curves.iloc[1]
    assert (start["geo_mean"], start["ci_low"], start["ci_high"]) == (1.0, 1.0, 1.0)
    assert end["geo_mean"] == pytest.approx(0.01)  # 10 ** mean(-1, -3); inf, NaN excluded
    # Regression: a diverged seed's NaN loss was taken for a missing seed and not counted.
    assert (end["n_seeds"], end["n_used"], end["n_nonfinite"]) == (4, 2, 2)
    assert end["median"] == pytest.approx(np.median([0.1, 0.001, np.inf, np.inf]))
    assert end["ci_low"] <= end["geo_mean"] <= end["ci_high"]


@pytest.mark.parametrize("steps,every,expected", [(30, 10, [0, 10, 20, 30]),
                                                  (7, 3, [0, 3, 6, 7])])
def test_curve_steps(steps, every, expected):
    assert list(curve_steps(steps, every)) == expected


def test_curve_steps_are_thinned_keeping_both_ends():
    steps = curve_steps(1000, 1, max_points=100)
    assert len(steps) == 100 and steps[0] == 0 and steps[-1] == 1000


def test_gradient_curves_pick_the_first_and_output_layer():
    rows = []
    for seed, scale in enumerate((1.0, 100.0)):
        for layer in range(3):
            rows.append({"cell_id": "c", "train_id": "t", "depth": 3, "residual": False,
                         "steps": 0, "log_every": 1, "seed": seed, "step": 0,
                         "param": f"layers.{layer}.weight", "layer": layer, "kind": "weight",
                         "grad_mean_abs": scale * 10.0**-layer})
    curves = gradient_curves(pd.DataFrame(rows), rng=np.random.default_rng(0),
                             n_resamples=199).set_index("role")
    assert curves.loc["first", "geo_mean"] == pytest.approx(10.0)  # sqrt(1 * 100)
    assert curves.loc["output", "geo_mean"] == pytest.approx(0.1)
    assert set(curves["n_used"]) == {2}
