"""The median of per-seed values with the sign test's interval, interpolated between order
statistics (Hettmansperger & Sheather 1986): how gradprobe reports a paired ratio.

The median of per-seed log ratios is the typical seed's ratio. After a real change those
ratios are a tight bulk with a far tail (kurtosis 70-160 on real records: a few seeds near a
change of ReLU pattern), where no interval for a mean can keep its level at a few seeds
(Bahadur & Savage 1956) and Student's t covered 83-86%; the sign test's interval holds for
any distribution (coverage table: docs/regression.md, "Coverage of the intervals").
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from gradprobe.analysis.stats.estimators import CONFIDENCE, Interval, rows_by_valid_count


def median_ci(values: np.ndarray, *, confidence: float = CONFIDENCE) -> Interval:
    """Median of each row's valid values with the distribution-free interval of the sign
    test, interpolated between order statistics (Hettmansperger & Sheather 1986).

    Takes ``values`` ``(num_groups x num_seeds)`` with NaN for excluded seeds. The median of
    per-seed log ratios is the ratio of the typical seed: unlike their mean, it is not moved
    by the few seeds whose ratio sits far out (kurtosis 70-160 on real records), and no
    interval for a mean can cover such data at small n (Bahadur & Savage 1956). Rows with
    fewer than 2 valid values get a NaN interval; ties need no care (order statistics of
    tied values are those values); a row of equal values gets ``[v, v]``. With too few
    values for any order-statistic interval to reach ``confidence`` (fewer than 6 at 95%)
    the interval is ``[min, max]``, whose level ``1 - 2**(1 - n)`` is lower (0.9375 at 5).
    """
    n, groups = rows_by_valid_count(values)
    point = np.full(len(n), np.nan)
    low, high = point.copy(), point.copy()
    for rows, unsorted in groups:
        count = unsorted.shape[1]
        data = np.sort(unsorted, axis=1)
        point[rows] = np.median(data, axis=1)
        if count < 2:
            continue
        d, weight = sign_interval_weights(int(count), confidence)
        # Interval between [X(d), X(n-d+1)] (level >= confidence) and the next narrower one.
        low[rows] = (1 - weight) * data[:, d - 1] + weight * data[:, d]
        high[rows] = (1 - weight) * data[:, count - d] + weight * data[:, count - d - 1]
    return Interval(point, low, high, n)


def sign_interval_weights(n: int, confidence: float = CONFIDENCE) -> tuple[int, float]:
    """``(d, weight)`` of the interpolated sign-test interval of the median of ``n`` values:
    its lower end is ``(1 - weight) X(d) + weight X(d+1)`` (1-based order statistics), its
    upper end the mirror image.

    ``d`` is the largest ``k`` whose interval ``[X(k), X(n-k+1)]`` has level
    ``gamma_k = 1 - 2 P(B <= k - 1) >= confidence``, ``B ~ Binomial(n, 1/2)``
    (``scipy.stats.binom``). Hettmansperger & Sheather (1986, Statistics & Probability
    Letters 4:75-79) interpolate towards the next interval with
    ``I = (gamma_d - confidence) / (gamma_d - gamma_{d+1})`` and
    ``weight = (n - d) I / (d + (n - 2d) I)``, which makes the level close to
    ``confidence`` at every ``n`` (derived for the double exponential, close for a wide
    range of symmetric densities), where the order statistics alone jump between levels (96.9% and
    78.1% at 6 values). With no ``k`` reaching ``confidence`` (fewer than 6 values at 95%):
    ``(1, 0.0)``, the range.
    """
    k = np.arange(1, n // 2 + 2)
    levels = np.clip(1 - 2 * stats.binom.cdf(k - 1, n, 0.5), 0.0, None)
    reaching = np.flatnonzero(levels >= confidence)
    if not len(reaching):
        return 1, 0.0
    d = int(reaching[-1]) + 1
    share = (levels[d - 1] - confidence) / (levels[d - 1] - levels[d])
    return d, float((n - d) * share / (d + (n - 2 * d) * share))
