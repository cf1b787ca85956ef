"""The two-gate rule, by hand: every branch of the verdict logic on literal numbers."""

from __future__ import annotations

import numpy as np

from gradprobe.analysis.compare.verdicts import nonfinite_override, ratio_verdicts, zero_verdicts

TOL = 1.01


def judge(p, low, high, prefer=0):
    return ratio_verdicts(np.array([p]), np.array([low]), np.array([high]), alpha=0.05,
                          tolerance=TOL, prefer=np.array([prefer]))[0]


def test_flagged_only_when_significant_and_whole_ci_outside_band():
    assert judge(0.01, 1.02, 1.05) == "regressed"
    assert judge(0.01, 0.95, 0.98) == "regressed"
    # One gate is not enough: not significant, or the CI reaches into the band.
    assert judge(0.2, 1.02, 1.05) == "inconclusive"
    assert judge(0.01, 1.005, 1.05) == "inconclusive"
    assert judge(0.01, 0.97, 0.995) == "inconclusive"
    # The band edge itself is inside: a ratio of exactly the tolerance is not flagged.
    assert judge(0.01, TOL, 1.05) == "inconclusive"


def test_preferred_direction_turns_a_flagged_change_into_improved():
    assert judge(0.01, 1.02, 1.05, prefer=1) == "improved"
    assert judge(0.01, 1.02, 1.05, prefer=-1) == "regressed"
    assert judge(0.01, 0.95, 0.98, prefer=-1) == "improved"
    assert judge(0.01, 0.95, 0.98, prefer=1) == "regressed"


def test_unchanged_needs_the_whole_ci_inside_the_band():
    # A paired test finds a last-bit difference "significant"; the band says it is nothing.
    assert judge(1e-5, 1.000001, 1.000002) == "unchanged"
    assert judge(0.9, 0.999, 1.001) == "unchanged"
    assert judge(0.9, 0.98, 1.001) == "inconclusive"


def test_no_test_is_inconclusive():
    assert judge(np.nan, np.nan, np.nan) == "inconclusive"
    assert judge(0.01, np.nan, np.nan) == "inconclusive"


def test_zero_fraction_verdicts_unpaired():
    p = np.array([0.01, 0.01, 0.01, 0.2])
    direction = np.array([-1, 1, 1, -1])
    prefer = np.array([0, 0, 1, 0])
    out = zero_verdicts(p, direction, np.full(4, np.nan), alpha=0.05, prefer=prefer)
    assert out.tolist() == ["regressed", "regressed", "improved", "inconclusive"]


def test_paired_zero_status_changes_are_verdicts_whatever_the_p_value():
    """Regression (issue 14, item 5): 8 of 16 paired seeds turned exactly zero, McNemar
    p = 0.0078, adjusted above alpha in a large family: the gate said inconclusive. Same
    seeds and initial weights make any change of zero status a change of the computation."""
    p = np.array([0.9, 0.9, 0.9, 1.0, 0.9])
    direction = np.array([-1, 1, 0, 0, 1])
    discordant = np.array([8, 1, 2, 0, 3])
    prefer = np.array([0, 1, 1, 0, -1])
    out = zero_verdicts(p, direction, discordant, alpha=0.05, prefer=prefer)
    assert out.tolist() == ["regressed", "improved", "regressed", "unchanged", "regressed"]


def test_new_nonfinite_values_always_regress():
    verdicts = np.array(["unchanged", "unchanged", "regressed", "inconclusive"], dtype=object)
    out = nonfinite_override(verdicts, np.array([0, 2, 1, 0]), np.array([1, 0, 1, 0]))
    assert out.tolist() == ["regressed", "improved", "regressed", "inconclusive"]
