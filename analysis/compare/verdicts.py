"""From statistics to verdicts: the two-gate rule of criterion.rs, with a preferred direction.

A change is *flagged* only when both gates open (criterion.rs, ``compare_to_threshold``):

1. the Benjamini-Hochberg adjusted p-value is below ``alpha`` (the change is real), and
2. the whole confidence interval of the ratio RUN/BASE (paired: the median seed's; unpaired:
   of geometric means) lies outside the tolerance band ``[1/tolerance, tolerance]`` (the
   change is large enough to matter; the band absorbs float-rounding differences between
   machines, which a paired test can find "significant").

A flagged change is ``regressed`` unless the config prefers its direction for that metric
(``improved``). Not flagged: ``unchanged`` when the whole interval lies inside the band (the
data show that any change is smaller than the tolerance), ``inconclusive`` otherwise (the
interval is too wide to tell, or no test was possible). ``missing``: a BASE cell or
parameter has no counterpart in RUN (nothing to test, and a gate that passed on it would
pass on an empty run). ``regressed`` and ``missing`` fail the gate.
"""

from __future__ import annotations

import numpy as np

from gradprobe.analysis.stats.structural import STRUCTURAL

REGRESSED, IMPROVED, UNCHANGED, INCONCLUSIVE = "regressed", "improved", "unchanged", "inconclusive"
MISSING = "missing"
# STRUCTURAL is not the verdict of a test: it labels what is left out of them.
VERDICTS = (REGRESSED, MISSING, IMPROVED, UNCHANGED, INCONCLUSIVE, STRUCTURAL)
FAILING = (REGRESSED, MISSING)  # verdicts that fail the gate
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


def zero_verdicts(p_adjusted: np.ndarray, direction: np.ndarray, discordant: np.ndarray, *,
                  alpha: float, prefer: np.ndarray) -> np.ndarray:
    """Verdict per test of a change in the fraction of seeds whose value is exactly zero.

    ``direction``: +1 where RUN has the smaller fraction of zeros (the metric moves up: a
    zero is the bottom of the magnitude scale), -1 the larger, 0 the same. ``discordant``:
    paired seeds whose zero status differs, NaN for unpaired tests.

    Paired (same seeds, same initial weights and input): a seed that turns exactly zero, or
    stops being zero, is a change of the computation, not seed noise, so any discordant seed
    is flagged whatever the p-value, and none is ``unchanged``. Unpaired: the seeds differ,
    so only the significance gate applies (a count has no rounding noise to band); not
    significant is ``inconclusive``. A flagged change with as many zeros on both sides
    (seeds swapped status) is ``regressed`` whatever the preference.
    """
    p = np.asarray(p_adjusted, dtype=np.float64)
    discordant = np.asarray(discordant, dtype=np.float64)
    paired = np.isfinite(discordant)
    flagged = np.where(paired, discordant > 0, np.isfinite(p) & (p < alpha))
    direction = np.asarray(direction)
    prefer = np.where(direction == 0, 0, np.asarray(prefer))
    return _assign(flagged, direction > 0, paired & (discordant == 0), prefer)


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
