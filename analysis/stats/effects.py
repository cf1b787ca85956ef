"""Paired effects: the residual/plain ratio of every metric, seed by seed.

Plain and residual cells of one seed start from the same weights and input (a paired
design: same ``init_fingerprint``), so the effect of the skip connections is measured per
seed as ``log10(residual) - log10(plain)``. Its median over seeds is the log of the typical
seed's ratio; the interpolated sign-test interval
(:func:`~gradprobe.analysis.stats.median_interval.median_ci`, distribution-free: the mean of
these heavy-tailed per-seed ratios had t intervals covering 83-86%, docs/regression.md) and
a Wilcoxon signed-rank test (no normality assumption) say how sure that is. P-values are
adjusted over the whole family of effects with Benjamini-Hochberg.

A pair where exactly one side is exactly zero (a dead-ReLU or underflowed seed) has no finite
log ratio but a known sign: it enters the signed-rank test as the most extreme difference
(ranks need only the order), while the median ratio and its CI use the finite pairs
and say how many they left out. Leaving out a pair with a zero control and a positive
treatment pulls the reported ratio towards 1, so the ratio is conservative there.

Columns of :func:`paired_effects`: the axis columns other than the compared one,
``cell_control``, ``cell_treatment``, ``param``, ``layer``, ``kind``, ``n_layers``,
``metric``, ``n_pairs`` (seeds with a finite non-zero value on both sides), ``n_excluded``,
``n_one_side_zero`` (excluded pairs where exactly one side is exactly zero), ``ratio``,
``ci_low``, ``ci_high`` (treatment/control, median over seeds, 95% CI),
``log10_ratio``, ``p_value``, ``p_adjusted``, ``significant`` (p_adjusted < alpha),
``same_initial_weights`` (every pair has equal fingerprints).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradprobe.analysis.stats.estimators import (
    CONFIDENCE,
    adjust_pvalues,
    log10_or_nan,
    one_side_zero_differences,
    wilcoxon_pvalues,
)
from gradprobe.analysis.stats.median_interval import median_ci
from gradprobe.analysis.stats.series import Series, axis_columns
from gradprobe.bench.engine.metrics import LAYER_METRICS

ALPHA = 0.05
# weight_l2 is a property of the initial draw, identical in paired cells by construction.
EFFECT_METRICS = ("grad_mean_abs", "grad_l2", "grad_max_abs", "act_rms", "grad_act_rms")


def match_pairs(keys: pd.DataFrame, axis: str, control, treatment) -> pd.DataFrame:
    """Row indices of series that differ only in ``axis``: columns ``i_control``,
    ``i_treatment`` plus the shared keys."""
    shared = [c for c in axis_columns(keys) if c != axis] + ["param"]
    indexed = keys.reset_index(names="row")
    left = indexed[indexed[axis] == control][[*shared, "row", "cell_id"]]
    right = indexed[indexed[axis] == treatment][[*shared, "row", "cell_id"]]
    pairs = left.merge(right, on=shared, suffixes=("_control", "_treatment"))
    return pairs.rename(columns={"row_control": "i_control", "row_treatment": "i_treatment",
                                 "cell_id_control": "cell_control",
                                 "cell_id_treatment": "cell_treatment"})


def paired_effects(series: Series, *, axis: str = "residual", control=False, treatment=True,
                   metrics=EFFECT_METRICS, alpha: float = ALPHA,
                   confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Treatment/control ratios for every matched series and metric (see module docstring).

    Returns an empty frame when the records have no pairs along ``axis``.
    """
    if axis not in series.keys.columns:
        return pd.DataFrame()
    pairs = match_pairs(series.keys, axis, control, treatment)
    if pairs.empty:
        return pd.DataFrame()
    ic, it = pairs["i_control"].to_numpy(), pairs["i_treatment"].to_numpy()
    info = series.keys.iloc[it][["layer", "kind", "n_layers"]].reset_index(drop=True)
    base = pd.concat([pairs.drop(columns=["i_control", "i_treatment"]), info], axis=1)
    same = _same_fingerprints(series.fingerprints[ic], series.fingerprints[it])
    weights = (base["kind"] == "weight").to_numpy()
    frames = []
    for metric in metrics:
        # act_rms and grad_act_rms have one value per layer: testing them on every parameter
        # of the layer would repeat one test and inflate the Benjamini-Hochberg family.
        rows = weights if metric in LAYER_METRICS else np.ones(len(base), dtype=bool)
        control = log10_or_nan(series.values[metric][ic[rows]])
        treatment = log10_or_nan(series.values[metric][it[rows]])
        diff = treatment[0] - control[0]
        interval = median_ci(diff, confidence=confidence)
        frame = base[rows].reset_index(drop=True)
        frame["metric"] = metric
        frame["n_pairs"] = interval.n
        frame["n_excluded"] = diff.shape[1] - interval.n
        signed = one_side_zero_differences(diff, control, treatment)
        frame["n_one_side_zero"] = np.isinf(signed).sum(axis=1)
        frame["ratio"] = 10**interval.point
        frame["ci_low"] = 10**interval.low
        frame["ci_high"] = 10**interval.high
        frame["log10_ratio"] = interval.point
        frame["p_value"] = wilcoxon_pvalues(signed)
        frame["same_initial_weights"] = same[rows]
        frames.append(frame)
    effects = pd.concat(frames, ignore_index=True)
    effects["p_adjusted"] = adjust_pvalues(effects["p_value"].to_numpy())
    effects["significant"] = effects["p_adjusted"] < alpha
    return effects


def _same_fingerprints(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    present = pd.notna(left) & pd.notna(right)
    return ((left == right) | ~present).all(axis=1) & present.any(axis=1)
