"""Width exponents (the muP coordinate check): log-log slope against width per seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradprobe.analysis.stats.series import Series
from gradprobe.analysis.stats.width_scaling import width_exponents


def _series(widths, exponent: float, n_seeds: int = 12, noise: float = 0.05) -> Series:
    """One parameter per width (plain and residual), values = width**exponent * seed noise."""
    rng = np.random.default_rng(7)
    keys = pd.DataFrame([{"cell_id": f"{w}-{r}", "depth": 3, "width": w, "residual": r,
                          "param": "layers.0.weight", "layer": 0, "kind": "weight",
                          "numel": w * w, "n_layers": 3}
                         for r in (False, True) for w in widths])
    base = np.asarray(keys["width"], dtype=float)[:, None] ** exponent
    values = base * 10 ** rng.normal(0, noise, size=(len(keys), n_seeds))
    metrics = {"act_rms": values, "grad_mean_abs": values / 10}
    shape = values.shape
    return Series(keys, np.arange(n_seeds), metrics, np.full(shape, "x", dtype=object),
                  np.ones(shape, dtype=bool))


def test_recovers_a_planted_power_law_with_a_ci_that_covers_it():
    table = width_exponents(_series([8, 16, 64, 256], -0.5), rng=np.random.default_rng(0),
                            n_resamples=999)
    assert len(table) == 4  # 2 metrics x plain/residual
    assert table["exponent"].to_numpy() == pytest.approx(-0.5, abs=0.03)
    assert ((table["ci_low"] < -0.5) & (table["ci_high"] > -0.5)).all()
    assert (table["n_used"] == 12).all() and (table["widths"] == "8,16,64,256").all()
    # The intercept puts the fitted line through the data: log10 value at width 1.
    act = table[table["metric"] == "act_rms"]
    assert act["intercept"].to_numpy() == pytest.approx(0.0, abs=0.1)


def test_empty_without_a_width_sweep():
    assert width_exponents(_series([8], 1.0), rng=np.random.default_rng(0)).empty


def test_same_generator_seed_same_intervals():
    series = _series([8, 32, 128], 0.25)
    first = width_exponents(series, rng=np.random.default_rng(3), n_resamples=199)
    again = width_exponents(series, rng=np.random.default_rng(3), n_resamples=199)
    pd.testing.assert_frame_equal(first, again)
