"""Structurally zero gradients: detected, labelled, kept out of the statistics and the gate."""

from __future__ import annotations

import pytest
from support import run_text

from gradprobe.analysis.compare.comparison import CompareSettings, compare_sides
from gradprobe.analysis.compare.sides import load_side
from gradprobe.analysis.stats.series import build_series
from gradprobe.analysis.stats.structural import structurally_zero

# Identity activation into a post-BatchNorm: every bias before a BatchNorm (layers 0 and 1)
# and the first norm's bias (it feeds layer 1's linear map, then BatchNorm) have a gradient
# that is zero in exact arithmetic; the last layer's bias and every weight do not.
PROBE = """name = "structural-probe"
description = "Biases removed by BatchNorm."
[model]
activation = "identity"
bias = true
norm = "batchnorm"
norm_position = "post"
residual = false
width = 8
[data]
input = "uniform"
batch_size = 16
[sweep]
seeds = 8
depth = [3]
dtype = ["{dtype}"]
"""
DEAD = {"layers.0.bias", "layers.1.bias", "norms.0.bias"}


@pytest.fixture(scope="module")
def probe_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("structural")
    return {d: run_text(root / d, PROBE.format(dtype=d)) for d in ("float32", "float64")}


def test_structurally_zero_parameters_are_exactly_the_dead_biases(probe_runs):
    for run in probe_runs.values():
        series = build_series(load_side(run, "RUN").in_memory().records)
        flagged = set(series.keys.loc[structurally_zero(series), "param"])
        assert flagged == DEAD


def test_float32_vs_float64_does_not_fail_on_rounding_noise(probe_runs):
    """Regression (issue 14, item 6): float32 vs float64 exited 1 on biases whose gradient
    is zero in exact arithmetic (ratio 1.6e-9 of two rounding noises)."""
    result = compare_sides(load_side(probe_runs["float32"], "BASE"),
                           load_side(probe_runs["float64"], "RUN"),
                           CompareSettings(n_resamples=199))
    tests = result.tests
    labelled = tests[tests["verdict"] == "structurally zero"]
    assert set(labelled["param"]) == DEAD and not labelled["gate"].any()
    assert set(labelled["metric"]) == {"grad_mean_abs", "grad_l2", "grad_max_abs"}
    assert not (tests.loc[tests["param"].isin(DEAD) & (tests["family"].notna()), "metric"]
                .isin(labelled["metric"]).any())  # no ratio or zero-count test of them
    assert not result.regressed, tests[tests["verdict"] == "regressed"]


DEEP_PLAIN = """name = "deep-plain"
description = "Vanishing, not zero: a deep plain ReLU network."
[model]
width = 10
bias = false
[sweep]
seeds = 4
depth = [32]
residual = [false]
"""


def test_vanishing_gradients_of_a_deep_plain_network_are_not_structurally_zero(tmp_path):
    """Bug: the default report called 165 weight series of deep plain cells (depth 16-32,
    gradients ~1e-30) "structurally zero", and compare left them out of the gate. The rule's
    bound is the rounding of a sum of dL/dh over the batch, a bias's gradient; a weight's
    gradient also scales with the layer's input, which vanishes here too."""
    side = load_side(run_text(tmp_path / "deep", DEEP_PLAIN), "RUN")
    series = build_series(side.in_memory().records)
    weights = series.keys["kind"] == "weight"
    assert series.values["grad_mean_abs"][weights.to_numpy()].min() < 1e-25  # it vanishes
    assert not structurally_zero(series).any()
