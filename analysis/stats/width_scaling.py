"""How activations and gradients scale with width: the coordinate check of muP.

Yang et al. (2021, "Tensor Programs V", the "coord check") plot the size of activations
and updates against width on log-log axes: under a parametrisation that transfers across
widths the curves are flat, and a straight line of slope ``a`` means the quantity grows as
``width ** a``. :func:`width_exponents` fits that exponent per parameter, for each group of
cells that differ only in width.

As for depth slopes (:mod:`gradprobe.analysis.stats.trends`), the fit is done per seed and the
exponents are averaged over seeds with a t CI (Hall's skewness correction, the default of
:func:`~gradprobe.analysis.stats.estimators.mean_ci`): the seed is the unit of replication.

Columns: the axis columns other than ``width``, ``param``, ``layer``, ``kind``, ``metric``,
``widths`` (comma-separated), ``n_widths``, ``n_seeds``, ``n_used`` (seeds with a finite
non-zero value at every width), ``exponent``, ``ci_low``, ``ci_high`` (95% CI),
``intercept`` (mean over seeds of log10 value at width 1, for drawing the fitted line).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradprobe.analysis.stats.estimators import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    log10_or_nan,
    mean_ci,
    per_seed_slopes,
)
from gradprobe.analysis.stats.series import Series, axis_columns

WIDTH_METRICS = ("act_rms", "grad_mean_abs")


def _width_groups(series: Series):
    """Yield ``(group keys, row indices ordered by width, widths)`` per (cells differing only
    in width, parameter) with at least two widths."""
    keys = series.keys
    shared = [c for c in axis_columns(keys) if c != "width"]
    for group_key, group in keys.groupby([*shared, "param"], sort=False, dropna=False):
        group = group.sort_values("width")
        if group["width"].nunique() < 2 or group["width"].duplicated().any():
            continue
        first = group.iloc[0]
        named = dict(zip([*shared, "param"], group_key, strict=True))
        yield ({**named, "layer": first["layer"], "kind": first["kind"]},
               group.index.to_numpy(), group["width"].to_numpy(dtype=np.float64))


def width_exponents(series: Series, *, rng: np.random.Generator, metrics=WIDTH_METRICS,
                    n_resamples: int = DEFAULT_RESAMPLES, confidence: float = CONFIDENCE
                    ) -> pd.DataFrame:
    """Per parameter and metric, the log-log slope against width with a CI over seeds
    (columns in the module docstring); empty when width is not swept."""
    if "width" not in series.keys.columns or series.keys["width"].nunique() < 2:
        return pd.DataFrame()
    groups = list(_width_groups(series))
    if not groups:
        return pd.DataFrame()
    rows, slopes, intercepts = [], [], []
    for metric in metrics:
        logs_all = log10_or_nan(series.values[metric])[0]
        for named, index, widths in groups:
            logs = logs_all[index].T  # (num_seeds x num_widths)
            x = np.log10(widths)
            per_seed = per_seed_slopes(x, logs[None])[0]
            rows.append({**named, "metric": metric, "widths": ",".join(f"{w:g}" for w in widths),
                         "n_widths": len(widths), "n_seeds": logs.shape[0]})
            slopes.append(per_seed)
            intercepts.append(_finite_row_means(logs) - per_seed * x.mean())
    interval = mean_ci(np.vstack(slopes), rng=rng, n_resamples=n_resamples,
                       confidence=confidence)
    frame = pd.DataFrame(rows)
    frame["n_used"] = interval.n
    frame["exponent"], frame["ci_low"], frame["ci_high"] = (interval.point, interval.low,
                                                             interval.high)
    frame["intercept"] = _finite_row_means(np.vstack(intercepts))
    return frame


def _finite_row_means(values: np.ndarray) -> np.ndarray:
    """Mean of each row's finite entries, NaN for a row without any (no warning)."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    return np.divide(np.where(finite, values, 0.0).sum(axis=1), counts,
                     out=np.full(len(values), np.nan), where=counts > 0)
