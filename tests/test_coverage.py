"""Coverage simulation: the default intervals cover 95%, the sampler's truths are exact."""

from __future__ import annotations

import numpy as np
import pytest

from gradprobe.coverage import (
    CoverageSettings,
    coverage_table,
    format_coverage,
    lognormal_sampler,
    records_sampler,
)


def test_t_intervals_cover_95_percent_and_bca_does_not_at_6_seeds():
    settings = CoverageSettings(repetitions=40, rows=250, seed_counts=(6,), n_resamples=499)
    table = coverage_table({"log-normal": lognormal_sampler(settings.rows)}, settings)
    t = table[table["method"] == "t"].set_index("estimate")["coverage"]
    bca = table[table["method"] == "BCa"].set_index("estimate")["coverage"]
    # 10000 intervals per estimate: Monte Carlo SE about 0.003.
    assert t.between(0.935, 0.965).all(), t
    assert (bca < 0.92).all(), bca  # BCa's known small-sample undercoverage
    assert "6 seeds" in format_coverage(table)


def test_records_sampler_truths_are_the_pool_means():
    base = np.array([[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 6.0, 6.0]])
    run = base + np.array([[1.0, 1.0, 1.0, 5.0], [0.0, 0.0, 0.0, 2.0]])
    sample = records_sampler(base, run)
    b, r, truth = sample(np.random.default_rng(0), 3)
    assert b.shape == (2, 3) and r.shape == (2, 6)
    assert truth[0] == pytest.approx([1.5, 5.5])
    assert truth[1] == pytest.approx([2.0, 0.5])
    assert truth[2] == pytest.approx([2.0, 0.5])
    # The paired columns of RUN are BASE's seeds.
    assert np.all((r[:, :3] - b)[0] >= 1)
