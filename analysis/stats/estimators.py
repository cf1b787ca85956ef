"""Statistics across seeds: pure functions over ``(groups, seeds)`` arrays.

The seed is the unit of replication. Gradient magnitudes span orders of magnitude and are
close to log-normal across seeds (Hanin 2018), so every estimate is made on ``log10`` values
and reported back as a geometric mean or a ratio (a paired ratio as the median seed's:
:func:`gradprobe.analysis.stats.median_interval.median_ci`). Zeros and non-finite values have no
logarithm: callers mask them (:func:`log10_or_nan`) and report how many there were.

All randomness comes from an explicit ``numpy.random.Generator``. Shapes follow rliable's
convention: ``values`` is a matrix of size ``(num_groups x num_seeds)``; each row is one
quantity (a cell, parameter and metric) measured once per seed. Rows may contain NaN for
excluded seeds; functions handle each row with its own valid values.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from gradprobe.core.errors import UserError

# Measured on 200 normal samples of 50 seeds, 5 bootstrap seeds each: the Monte Carlo SD of
# a 95% interval endpoint is 1.8% of the interval width at 2000 resamples, 1.1% at 4999 and
# 0.8% at 9999. 4999 keeps that error small at half the cost of scipy's default.
DEFAULT_RESAMPLES = 4999
# Upper bound of --resamples: scipy keeps rows x resamples float64 bootstrap values per call
# (``--resamples 100000000000`` was OOM-killed at 23 GB), and past ~10^5 the Monte Carlo error
# above is far below the seed-to-seed spread any interval reflects.
MAX_RESAMPLES = 100_000
CONFIDENCE = 0.95
# Resampled values per bootstrap batch (32 MB of float64): small batches stay in cache.
_BATCH_VALUES = 4_000_000
# Above this many seeds a row's interval is the default (Hall's t) on its log values even
# when a bootstrap method is asked for. The bootstrap costs rows x resamples x seeds and its
# advantage, BCa's skewness correction, vanishes as the mean of log values becomes normal
# (CLT); measured agreement of the two at 500 seeds of log-normal data is checked in
# tests/test_stats.py.
BOOTSTRAP_MAX_SEEDS = 500
# Default interval methods. Means (of log values, one sample): Student's t after Hall's
# skewness-removing transformation ("hall", _hall_interval). Log values of real gradients are
# left-skewed across seeds (median skewness -1.0 on the smoke config's records): plain t
# covered 0.938-0.940 at 6 to 16 seeds there, missing on one side only, and Hall's
# correction brings it to 0.940-0.947 (0.949-0.950 on log-normal data, where t is exact).
# Differences of means (two samples): Welch's unequal-variance t ("t"). BCa has no
# small-sample correction: at 6-16 seeds its 95% intervals covered 86-93% (it reflects a
# plug-in variance with z instead of t quantiles, about 30% too narrow at 6 seeds: the
# "narrowness bias" of Hesterberg 2015, The American Statistician 69(4)). Paired ratios use
# median_interval.median_ci instead: their per-seed log ratios are too heavy-tailed for any
# interval of a mean. Measured coverage of each, on log-normal data and on real records, is
# the table of `gradprobe calibrate CONFIG --coverage` (src/gradprobe/coverage.py,
# docs/regression.md).
DEFAULT_METHOD = "hall"
DEFAULT_DIFFERENCE_METHOD = "t"
# The smallest positive normal float64. A p-value that underflows to 0 (a normal
# approximation far in its tail, or an exact test with thousands of seeds) is stored as this
# upper bound instead: the true p is smaller, and 0 would claim certainty.
P_FLOOR = float(np.finfo(np.float64).tiny)


def check_resamples(n_resamples: object) -> None:
    """UserError unless ``n_resamples`` is an integer in 100..:data:`MAX_RESAMPLES`."""
    if not isinstance(n_resamples, int) or not 100 <= n_resamples <= MAX_RESAMPLES:
        raise UserError(f"--resamples {n_resamples}: use 100 to {MAX_RESAMPLES} resamples "
                        "(the default 4999 is accurate to about 1% of an interval's width)")


def log10_or_nan(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``log10(values)`` with NaN where a value is zero or non-finite.

    Returns ``(logs, is_zero, is_nonfinite)``, all of ``values``' shape. Negative values are
    not expected (all metrics are magnitudes) and count as non-finite.
    """
    values = np.asarray(values, dtype=np.float64)
    is_nonfinite = ~np.isfinite(values) | (values < 0)
    is_zero = values == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(is_nonfinite | is_zero, np.nan, np.log10(np.abs(values)))
    return logs, is_zero, is_nonfinite


@dataclass(frozen=True)
class Interval:
    """Per-row point estimates and confidence bounds, each ``(num_groups,)``."""

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray  # valid seeds per row


def floor_pvalues(pvalues) -> np.ndarray:
    """``pvalues`` as float64 with exact zeros replaced by :data:`P_FLOOR` (NaN stays)."""
    pvalues = np.asarray(pvalues, dtype=np.float64)
    return np.where(pvalues == 0, P_FLOOR, pvalues)


def rows_by_valid_count(values: np.ndarray) -> tuple[np.ndarray, list]:
    """``(n, groups)`` for ``values`` ``(num_groups x num_seeds)`` with NaN for excluded
    seeds: ``n`` the valid values per row ``(num_groups,)``, and per distinct non-zero count
    ``c`` one ``(rows, data)``: the row indices and their valid values ``(len(rows), c)``,
    so that an estimator handles rows of one count together, vectorised."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    valid = ~np.isnan(values)
    n = valid.sum(axis=1)
    groups = []
    for count in np.unique(n[n > 0]):
        rows = np.flatnonzero(n == count)
        groups.append((rows, values[rows][valid[rows]].reshape(len(rows), count)))
    return n, groups


def mean_ci(values: np.ndarray, *, rng: np.random.Generator,
            n_resamples: int = DEFAULT_RESAMPLES, confidence: float = CONFIDENCE,
            method: str = DEFAULT_METHOD,
            max_bootstrap_seeds: int = BOOTSTRAP_MAX_SEEDS) -> Interval:
    """Mean of each row's valid values with a CI: t after Hall's skewness-removing
    transformation (``method="hall"``, the default, :func:`_hall_interval`), Student's t
    (``"t"``, ``scipy.stats.t``) or a bootstrap (``"BCa"``, ``"percentile"``, ``"basic"``:
    ``scipy.stats.bootstrap``; ``rng`` and ``n_resamples`` are used only then).

    Takes ``values`` ``(num_groups x num_seeds)`` with NaN for excluded seeds. Rows with fewer
    than 2 valid values get a NaN interval; rows whose valid values are all equal get the
    degenerate interval ``[v, v]``. Rows are handled together, vectorised, one call per
    distinct count of valid values. Rows with more than ``max_bootstrap_seeds`` valid values
    get the default interval whatever the bootstrap method (see :data:`BOOTSTRAP_MAX_SEEDS`).
    """
    n, groups = rows_by_valid_count(values)
    point = np.full(len(n), np.nan)
    low, high = point.copy(), point.copy()
    for rows, data in groups:
        count = data.shape[1]
        point[rows] = data.mean(axis=1)
        if count < 2:
            continue
        # Spreads at float-rounding level (e.g. a log ratio that is the same in every seed)
        # are constant data: the bootstrap distribution is a point.
        scale = np.maximum(1.0, np.abs(data).max(axis=1))
        constant = np.ptp(data, axis=1) <= 1e-12 * scale
        low[rows[constant]] = high[rows[constant]] = point[rows[constant]]
        varying = rows[~constant]
        if not len(varying):
            continue
        if method == "t":
            lo, hi = _t_interval(data[~constant], confidence)
        elif method == "hall" or count > max_bootstrap_seeds:
            lo, hi = _hall_interval(data[~constant], confidence)
        else:
            lo, hi = _bootstrap_mean(data[~constant], rng, n_resamples, confidence, method)
        low[varying], high[varying] = lo, hi
    return Interval(point, low, high, n)


def _t_interval(data: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Student's t interval of each row's mean (``scipy.stats.t``)."""
    n = data.shape[1]
    mean = data.mean(axis=1)
    return stats.t.interval(confidence, df=n - 1, loc=mean, scale=stats.sem(data, axis=1))


def _hall_interval(data: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Hall's (1992, "On the removal of skewness by transformation", JRSS B 54:221-228)
    interval of each row's mean: the studentized mean ``T = sqrt(n)(mean - mu)/s`` is
    skewed by about ``-2 gamma / sqrt(n)`` (``gamma``: the data's skewness), and
    ``g(T) = T + a T**2 + a**2 T**3 / 3 + gamma / (6 sqrt(n))``, ``a = gamma / (3 sqrt(n))``,
    removes that term; ``g`` is monotone with the closed-form inverse used here, and its
    quantiles are taken from ``scipy.stats.t`` (df = n - 1). Johnson's (1978) shift is the
    constant term alone."""
    n = data.shape[1]
    mean, sd = data.mean(axis=1), data.std(axis=1, ddof=1)
    gamma = ((data - mean[:, None]) ** 3).mean(axis=1) / sd**3
    a, shift = gamma / (3 * np.sqrt(n)), gamma / (6 * np.sqrt(n))
    quantile = stats.t.ppf((1 + confidence) / 2, df=n - 1)

    def g_inverse(y: float) -> np.ndarray:
        # (1 + a T)**3 = 1 + 3 a (g - shift); a -> 0 is the plain t. For small x,
        # cbrt(1 + x) - 1 cancels: expm1(log1p(x) / 3) keeps its digits (x > -1).
        x = 3 * a * (y - shift)
        with np.errstate(divide="ignore", invalid="ignore"):
            root_less_one = np.where(x > -0.5, np.expm1(np.log1p(np.maximum(x, -0.5)) / 3),
                                     np.cbrt(1 + x) - 1)
            t = root_less_one / a
        return np.where(np.abs(a) < 1e-12, y - shift, t)

    se = sd / np.sqrt(n)
    return mean - se * g_inverse(quantile), mean - se * g_inverse(-quantile)


def _bootstrap_mean(data: np.ndarray, rng: np.random.Generator, n_resamples: int,
                    confidence: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    batch = max(1, _BATCH_VALUES // data.size)
    with warnings.catch_warnings():
        # BCa warns when a row's jackknife or bootstrap distribution is degenerate (few
        # distinct values); such rows get NaN and are redone with the percentile method.
        warnings.simplefilter("ignore", category=stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        result = stats.bootstrap((data,), np.mean, axis=-1, vectorized=True,
                                 n_resamples=n_resamples, batch=batch, method=method,
                                 confidence_level=confidence, rng=rng)
    low = np.array(result.confidence_interval.low, dtype=np.float64, ndmin=1)
    high = np.array(result.confidence_interval.high, dtype=np.float64, ndmin=1)
    failed = np.isnan(low) | np.isnan(high)
    if failed.any() and method != "percentile":
        low[failed], high[failed] = _bootstrap_mean(data[failed], rng, n_resamples,
                                                    confidence, "percentile")
    return low, high


def one_side_zero_differences(diff: np.ndarray, a: tuple, b: tuple) -> np.ndarray:
    """``diff`` (log10 b - log10 a) with +inf where only ``a`` is exactly zero and ``b`` is
    finite, -inf for the reverse. ``a`` and ``b`` are :func:`log10_or_nan` results."""
    (_, a_zero, a_bad), (_, b_zero, b_bad) = a, b
    a_ok, b_ok = ~a_zero & ~a_bad, ~b_zero & ~b_bad
    out = np.where(a_zero & b_ok, np.inf, diff)
    return np.where(b_zero & a_ok, -np.inf, out)


def wilcoxon_pvalues(differences: np.ndarray) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-value of each row (H0: median difference 0).

    Takes ``(num_groups x num_seeds)`` paired differences with NaN for excluded pairs and
    +-inf for pairs of known sign but no finite size (one side exactly zero): those rank
    above every finite difference, tied with each other. Zero differences are dropped
    (Wilcoxon's convention); a row with no non-zero difference has p = 1 (no evidence of any
    change), one with no valid pair has p = NaN.
    """
    differences = np.atleast_2d(np.asarray(differences, dtype=np.float64))
    p = np.full(len(differences), np.nan)
    for i, row in enumerate(differences):
        row = _rank_infinities(row[~np.isnan(row)])
        nonzero = row[row != 0]
        if len(row) == 0:
            continue
        if len(nonzero) == 0:
            p[i] = 1.0
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            p[i] = stats.wilcoxon(nonzero, alternative="two-sided").pvalue
    return floor_pvalues(p)


def _rank_infinities(row: np.ndarray) -> np.ndarray:
    """Replace +-inf by +-(a value above every finite |difference|): the signed-rank
    statistic depends on the order of |differences| only."""
    infinite = np.isinf(row)
    if not infinite.any():
        return row
    finite = np.abs(row[~infinite])
    top = 2 * finite.max() + 1 if len(finite) else 1.0
    return np.where(infinite, np.sign(row) * top, row)


def adjust_pvalues(pvalues: np.ndarray, method: str = "bh") -> np.ndarray:
    """Benjamini-Hochberg (``"bh"``) or Benjamini-Yekutieli (``"by"``) adjusted p-values.

    ``scipy.stats.false_discovery_control`` over the finite entries, which form the family;
    NaN entries (no test possible) stay NaN and do not count towards the family size.
    """
    pvalues = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(pvalues.shape, np.nan)
    finite = np.isfinite(pvalues)
    if finite.any():
        adjusted[finite] = stats.false_discovery_control(pvalues[finite], method=method)
    return adjusted


def per_seed_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``y`` on ``x`` for every (group, seed).

    Takes ``x`` ``(num_points,)`` and ``y`` ``(num_groups x num_seeds x num_points)``;
    returns ``(num_groups x num_seeds)``, NaN where a series has any NaN point or fewer than
    two points. Fitting each seed's series and averaging the slopes keeps the seed as the
    unit of replication: seeds share their first layers across depths, so the points of one
    seed are not independent observations.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return np.full(y.shape[:-1], np.nan)
    xc = x - x.mean()
    slopes = ((y - y.mean(axis=-1, keepdims=True)) * xc).sum(axis=-1) / (xc**2).sum()
    return np.where(np.isnan(y).any(axis=-1), np.nan, slopes)


def _difference_of_means(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return x.mean(axis=axis) - y.mean(axis=axis)


def mean_difference_ci(x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator,
                       n_resamples: int = DEFAULT_RESAMPLES, confidence: float = CONFIDENCE,
                       method: str = DEFAULT_DIFFERENCE_METHOD) -> Interval:
    """``mean(x) - mean(y)`` per row with a CI for independent samples: Welch's t
    (``method="t"``, the default: ``scipy.stats.ttest_ind(equal_var=False)``, Welch 1947) or
    a two-sample bootstrap (``scipy.stats.bootstrap``, ``paired=False``, which resamples each
    sample separately; ``rng`` and ``n_resamples`` are used only then).

    Takes ``x`` ``(num_groups x n_x)`` and ``y`` ``(num_groups x n_y)``, NaN for excluded
    seeds; vectorised over rows that share their counts of valid values. Rows with fewer than
    2 valid values on either side get a NaN interval (and a NaN point without any value);
    rows constant on both sides get ``[d, d]``. ``n`` is the smaller of the two valid counts.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    nx, ny = (~np.isnan(x)).sum(axis=1), (~np.isnan(y)).sum(axis=1)
    point = np.full(len(x), np.nan)
    low, high = point.copy(), point.copy()
    for cx, cy in set(zip(nx.tolist(), ny.tolist(), strict=True)):
        rows = np.flatnonzero((nx == cx) & (ny == cy))
        if cx == 0 or cy == 0:
            continue
        a = x[rows][~np.isnan(x[rows])].reshape(len(rows), cx)
        b = y[rows][~np.isnan(y[rows])].reshape(len(rows), cy)
        point[rows] = _difference_of_means(a, b)
        if cx < 2 or cy < 2:
            continue
        if method == "t":
            lo, hi = _welch_interval(a, b, confidence)
        else:
            lo, hi = _bootstrap_difference(a, b, rng, n_resamples, confidence, method)
        low[rows], high[rows] = lo, hi
    return Interval(point, low, high, np.minimum(nx, ny))


def _welch_interval(a: np.ndarray, b: np.ndarray,
                    confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Welch's t interval of ``mean(a) - mean(b)`` per row; ``[d, d]`` where both rows are
    constant up to float rounding (no variance to estimate, as in :func:`mean_ci`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        ci = stats.ttest_ind(a, b, axis=1, equal_var=False).confidence_interval(confidence)
    low = np.array(ci.low, dtype=np.float64, ndmin=1)
    high = np.array(ci.high, dtype=np.float64, ndmin=1)
    scale = np.maximum(1.0, np.maximum(np.abs(a).max(axis=1), np.abs(b).max(axis=1)))
    constant = np.maximum(np.ptp(a, axis=1), np.ptp(b, axis=1)) <= 1e-12 * scale
    point = _difference_of_means(a, b)
    low[constant], high[constant] = point[constant], point[constant]
    return low, high


def _bootstrap_difference(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                          n_resamples: int, confidence: float,
                          method: str) -> tuple[np.ndarray, np.ndarray]:
    batch = max(1, _BATCH_VALUES // (a.size + b.size))
    with warnings.catch_warnings():
        # As in _bootstrap_mean: degenerate rows give NaN and are redone as percentile.
        warnings.simplefilter("ignore", category=stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        result = stats.bootstrap((a, b), _difference_of_means, axis=-1, vectorized=True,
                                 paired=False, n_resamples=n_resamples, batch=batch,
                                 method=method, confidence_level=confidence, rng=rng)
    low = np.array(result.confidence_interval.low, dtype=np.float64, ndmin=1)
    high = np.array(result.confidence_interval.high, dtype=np.float64, ndmin=1)
    failed = np.isnan(low) | np.isnan(high)
    if failed.any() and method != "percentile":
        low[failed], high[failed] = _bootstrap_difference(a[failed], b[failed], rng,
                                                          n_resamples, confidence, "percentile")
    return low, high


def mannwhitney_pvalues(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two-sided Mann-Whitney U p-value of each row (H0: neither sample tends to be larger).

    Takes ``x`` ``(num_groups x n_x)`` and ``y`` ``(num_groups x n_y)`` with NaN for excluded
    seeds; a row with no valid value on a side has p = NaN. ``scipy.stats.mannwhitneyu``
    picks the exact distribution for small samples without ties.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    p = np.full(len(x), np.nan)
    for i, (a, b) in enumerate(zip(x, y, strict=True)):
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        if len(a) and len(b):
            p[i] = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    return floor_pvalues(p)


def count_change_pvalues(base_hits: np.ndarray, base_n: np.ndarray, run_hits: np.ndarray,
                         run_n: np.ndarray) -> np.ndarray:
    """Two-sided p-value that an event (a zero value) is as frequent in both samples.

    Takes ``(num_groups,)`` integer arrays (or scalars, broadcast): events and sample sizes
    per side. Fisher's exact test on the 2x2 table (``scipy.stats.fisher_exact``) for
    independent samples.
    """
    arrays = np.broadcast_arrays(base_hits, base_n, run_hits, run_n)
    p = np.full(arrays[0].shape, np.nan)
    for i, (bh, bn, rh, rn) in enumerate(zip(*arrays, strict=True)):
        if bn and rn:
            p[i] = stats.fisher_exact([[bh, bn - bh], [rh, rn - rh]]).pvalue
    return floor_pvalues(p)


def discordant_pvalues(only_base: np.ndarray, only_run: np.ndarray) -> np.ndarray:
    """Exact McNemar test for paired binary outcomes: a two-sided binomial test of the
    discordant pairs (event on one side only) against 1/2. ``(num_groups,)`` counts in;
    p = 1 where no pair is discordant."""
    p = np.ones(len(only_base))
    for i, (b, r) in enumerate(zip(only_base, only_run, strict=True)):
        if b + r:
            p[i] = stats.binomtest(int(r), int(b + r), 0.5).pvalue
    return floor_pvalues(p)
