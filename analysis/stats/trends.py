"""How gradients change with depth, and where in the network they are smallest.

:func:`depth_trends` fits, for each seed, a line to log10(metric) against depth for a fixed
role (the first layer's weight, or the output layer's) and averages the slopes over seeds.
``10 ** slope`` is the factor one more layer multiplies the quantity by, the number that
mean-field theory predicts (He et al. 2015; Schoenholz et al. 2017).

Columns of :func:`depth_trends`: axis columns other than ``depth``, ``role`` (``first`` |
``output``), ``metric``, ``depths`` (comma-separated), ``n_depths``, ``n_seeds``, ``n_used``
(seeds with a finite non-zero value at every depth), ``slope``, ``ci_low``, ``ci_high``
(log10 units per layer, 95% CI), ``factor_per_layer``, ``factor_low``, ``factor_high``,
``intercept`` (mean over seeds, for drawing the fitted line).

:func:`layer_contrasts` asks the blog's question "do gradients vanish especially in early
layers?" per cell: the per-seed ratio of the first layer's metric to the output layer's,
summarised like the paired effects (the median seed's ratio with the interpolated sign-test
interval, :func:`~gradprobe.analysis.stats.median_interval.median_ci`; Wilcoxon signed-rank test).
Columns: ``cell_id``, axis columns, ``metric``, ``n_pairs``, ``ratio``, ``ci_low``,
``ci_high``, ``p_value``, ``p_adjusted`` (BH over all contrasts), ``significant``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradprobe.analysis.stats.effects import ALPHA
from gradprobe.analysis.stats.estimators import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    adjust_pvalues,
    log10_or_nan,
    mean_ci,
    per_seed_slopes,
    wilcoxon_pvalues,
)
from gradprobe.analysis.stats.median_interval import median_ci
from gradprobe.analysis.stats.series import Series, axis_columns

TREND_METRICS = ("grad_mean_abs", "grad_l2", "grad_max_abs", "act_rms", "grad_act_rms")


def role_mask(keys: pd.DataFrame, role: str) -> np.ndarray:
    """Weights of the first layer (``first``) or of the output layer (``output``)."""
    weight = (keys["kind"] == "weight").to_numpy()
    if role == "first":
        return weight & (keys["layer"] == 0).to_numpy()
    return weight & (keys["layer"] == keys["n_layers"] - 1).to_numpy()


def _depth_series(series: Series, role: str, metric: str):
    """Yield ``(group keys, depths, logs (S x D))`` per group of cells differing in depth."""
    keys = series.keys
    shared = [c for c in axis_columns(keys) if c != "depth"]
    rows = np.flatnonzero(role_mask(keys, role))
    logs_all = log10_or_nan(series.values[metric])[0]
    for group_key, group in keys.iloc[rows].groupby(shared, sort=False, dropna=False):
        group = group.sort_values("depth")
        if group["depth"].nunique() < 2:
            continue
        yield dict(zip(shared, group_key, strict=True)), group["depth"].to_numpy(), \
            logs_all[group.index.to_numpy()].T


def _finite_row_means(logs: np.ndarray) -> np.ndarray:
    """Mean of each row's finite entries; NaN (without numpy's empty-slice warning) for a
    seed with no finite value, which the slope interval already counts as unusable."""
    finite = np.isfinite(logs)
    counts = finite.sum(axis=1)
    sums = np.where(finite, logs, 0.0).sum(axis=1)
    return np.divide(sums, counts, out=np.full(len(logs), np.nan), where=counts > 0)


def depth_trends(series: Series, *, rng: np.random.Generator, metrics=TREND_METRICS,
                 n_resamples: int = DEFAULT_RESAMPLES, confidence: float = CONFIDENCE
                 ) -> pd.DataFrame:
    """Per-layer slope of log10(metric) against depth, with a t CI over seeds."""
    if "depth" not in series.keys.columns:
        return pd.DataFrame()
    rows, slopes, intercepts = [], [], []
    for metric in metrics:
        for role in ("first", "output"):
            for group, depths, logs in _depth_series(series, role, metric):
                per_seed = per_seed_slopes(depths, logs[None])[0]
                rows.append({**group, "role": role, "metric": metric,
                             "depths": ",".join(map(str, depths)), "n_depths": len(depths),
                             "n_seeds": logs.shape[0]})
                slopes.append(per_seed)
                intercepts.append(_finite_row_means(logs) - per_seed * depths.mean())
    if not rows:
        return pd.DataFrame()
    interval = mean_ci(np.vstack(slopes), rng=rng, n_resamples=n_resamples,
                       confidence=confidence)
    frame = pd.DataFrame(rows)
    frame["n_used"] = interval.n
    frame["slope"], frame["ci_low"], frame["ci_high"] = interval.point, interval.low, \
        interval.high
    frame["factor_per_layer"] = 10**interval.point
    frame["factor_low"], frame["factor_high"] = 10**interval.low, 10**interval.high
    frame["intercept"] = _finite_row_means(np.vstack(intercepts))
    return frame


def layer_contrasts(series: Series, *, metrics=TREND_METRICS, alpha: float = ALPHA,
                    confidence: float = CONFIDENCE) -> pd.DataFrame:
    """First-layer / output-layer ratio per cell and metric (see module docstring)."""
    keys = series.keys
    first = keys[role_mask(keys, "first")].set_index("cell_id")
    output = keys[role_mask(keys, "output")].set_index("cell_id")
    cells = first.index.intersection(output.index)
    i_first = keys.index[role_mask(keys, "first")].to_numpy()[first.index.get_indexer(cells)]
    i_out = keys.index[role_mask(keys, "output")].to_numpy()[output.index.get_indexer(cells)]
    base = first.loc[cells, axis_columns(first)].reset_index()
    frames = []
    for metric in metrics:
        logs = log10_or_nan(series.values[metric])[0]
        diff = logs[i_first] - logs[i_out]
        interval = median_ci(diff, confidence=confidence)
        frame = base.copy()
        frame["metric"] = metric
        frame["n_pairs"] = interval.n
        frame["ratio"], frame["ci_low"], frame["ci_high"] = (10**interval.point,
                                                             10**interval.low, 10**interval.high)
        frame["p_value"] = wilcoxon_pvalues(diff)
        frames.append(frame)
    contrasts = pd.concat(frames, ignore_index=True)
    contrasts["p_adjusted"] = adjust_pvalues(contrasts["p_value"].to_numpy())
    contrasts["significant"] = contrasts["p_adjusted"] < alpha
    return contrasts
