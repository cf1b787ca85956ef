"""Per-configuration statistics: geometric mean with a 95% CI, median and IQR.

One output row per (cell, parameter, metric). Columns of :func:`describe`:

* keys: ``cell_id``, the axis columns, ``param``, ``layer``, ``kind``, ``numel``,
  ``n_layers``, ``metric``
* counts: ``n_seeds`` (seeds in the records), ``n_used`` (finite, non-zero: the log
  statistics use these), ``n_zero`` (exactly 0), ``n_nonfinite`` (NaN or inf)
* ``geo_mean``, ``ci_low``, ``ci_high``: 10 ** (mean of log10 values) and its 95% interval
  (t after Hall's skewness correction, on the log values:
  :data:`gradprobe.analysis.stats.estimators.DEFAULT_METHOD`);
  ``log10_mean``,
  ``log10_sd`` (spread across seeds on log scale)
* ``structural_zero``: the parameter's gradient is zero in exact arithmetic and what the
  records hold is rounding noise (:mod:`gradprobe.analysis.stats.structural`); its gradient
  statistics
  describe that noise, not gradient flow
* ``median``, ``q25``, ``q75``: quantiles of the raw values over all seeds (zeros included)
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from gradprobe.analysis.stats.estimators import CONFIDENCE, DEFAULT_RESAMPLES, log10_or_nan, mean_ci
from gradprobe.analysis.stats.series import Series
from gradprobe.analysis.stats.structural import structurally_zero


def describe(series: Series, *, rng: np.random.Generator,
             n_resamples: int = DEFAULT_RESAMPLES, confidence: float = CONFIDENCE
             ) -> pd.DataFrame:
    """Statistics for every series and metric (columns in the module docstring)."""
    frames = []
    structural = structurally_zero(series)
    for metric, values in series.values.items():
        logs, is_zero, is_nonfinite = log10_or_nan(values)
        present = series.present
        interval = mean_ci(logs, rng=rng, n_resamples=n_resamples, confidence=confidence)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN rows
            quantiles = np.nanquantile(np.where(np.isfinite(values), values, np.nan),
                                       [0.25, 0.5, 0.75], axis=1)
            sd = np.nanstd(logs, axis=1, ddof=1)
        frame = series.keys.copy()
        frame["metric"] = metric
        frame["n_seeds"] = present.sum(axis=1)
        frame["n_used"] = interval.n
        frame["n_zero"] = is_zero.sum(axis=1)
        frame["n_nonfinite"] = (is_nonfinite & present).sum(axis=1)
        frame["geo_mean"] = 10**interval.point
        frame["ci_low"] = 10**interval.low
        frame["ci_high"] = 10**interval.high
        frame["log10_mean"] = interval.point
        frame["log10_sd"] = sd
        frame["median"], frame["q25"], frame["q75"] = quantiles[1], quantiles[0], quantiles[2]
        frame["structural_zero"] = structural
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
