"""From statistics to verdicts: the two-gate rule of criterion.rs, with a preferred direction.

A change is *flagged* only when both gates open (criterion.rs, ``compare_to_threshold``):

1. the Benjamini-Hochberg adjusted p-value is below ``alpha`` (the change is real), and
2. the whole confidence interval of the geometric-mean ratio RUN/BASE lies outside the
   tolerance band ``[1/tolerance, tolerance]`` (the change is large enough to matter; the band
   absorbs float-rounding differences between machines, which a paired test can find
   "significant").

A flagged change is ``regressed`` unless the config prefers its direction for that metric
(``improved``). Not flagged: ``unchanged`` when the whole interval lies inside the band (the
data show that any change is smaller than the tolerance), ``inconclusive`` otherwise (the
interval is too wide to tell, or no test was possible). Only ``regressed`` fails the gate.
"""

from __future__ import annotations

import numpy as np

REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE = "regressed", "improved", "unchanged", "inconclusive"
VERDICTS = (REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE)
PREFER_SIGN = {"higher": 1, "lower": -1}


def ratio_verdicts(p_adjusted: np.ndarray, ci_low: np.ndarray, ci_high: np.ndarray, *,
                   alpha: float, tolerance: float, prefer: np.ndarray) -> np.ndarray:
    """Verdict per test from ``(num_tests,)`` arrays: adjusted p, the ratio's CI bounds, and
    ``prefer`` (+1 higher is better, -1 lower is better, 0 no preference)."""
    p, low, high = (np.asarray(a, dtype=np.float64) for a in (p_adjusted, ci_low, ci_high))
    testable = np.isfinite(p) & np.isfinite(low) & np.isfinite(high)
    up = testable & (low > tolerance)
    down = testable & (high < 1 / tolerance)
    flagged = testable & (p < alpha) & (up | down)
    inside = testable & (low >= 1 / tolerance) & (high <= tolerance)
    return _assign(flagged, up, inside, np.asarray(prefer))


def zero_verdicts(p_adjusted: np.ndarray, more_zeros: np.ndarray, *, alpha: float,
                  prefer: np.ndarray) -> np.ndarray:
    """Verdict per test of a change in the fraction of seeds whose value is exactly zero.

    A count has no rounding noise, so only the significance gate applies. More zeros move
    the metric down (a zero is the bottom of the magnitude scale); fewer move it up. Not
    significant is ``inconclusive``: no equivalence band exists for a proportion.
    """
    p = np.asarray(p_adjusted, dtype=np.float64)
    flagged = np.isfinite(p) & (p < alpha)
    up = ~np.asarray(more_zeros, dtype=bool)
    return _assign(flagged, up, np.zeros(len(p), dtype=bool), np.asarray(prefer))


def _assign(flagged: np.ndarray, up: np.ndarray, inside: np.ndarray,
            prefer: np.ndarray) -> np.ndarray:
    wanted = (up & (prefer > 0)) | (~up & (prefer < 0))
    out = np.full(len(flagged), INCONCLUSIVE, dtype=object)
    out[inside] = UNCHANGED
    out[flagged] = np.where(wanted[flagged], IMPROVED, REGRESSED)
    return out


def nonfinite_override(verdicts: np.ndarray, base_nonfinite: np.ndarray,
                       run_nonfinite: np.ndarray) -> np.ndarray:
    """NaN or inf gradients are a bug, not noise: values that turn non-finite where the
    baseline had none are ``regressed`` whatever the statistics say; non-finite values that
    disappear are ``improved``."""
    out = np.array(verdicts, dtype=object)
    base, run = np.asarray(base_nonfinite), np.asarray(run_nonfinite)
    out[(base == 0) & (run > 0)] = REGRESSED
    out[(base > 0) & (run == 0)] = IMPROVED
    return out
