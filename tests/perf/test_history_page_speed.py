"""Speed of the site's history page (``make perf``): the smoke run's rows over 20 runs, its
cells copied 3 times (648 series), each level with noise above the tolerance, so that every
series goes through the PELT fit (series without such noise skip it: the default config's
6720 series of 20 identical runs render in 2.6 s).

Measured on the shared 2-core machine: 13.9 s for 2160 noisy series, about 6 ms each, nearly
all of it ruptures' PELT."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradprobe.analysis.history.history_page import page_data
from gradprobe.analysis.history.run_history import history_rows


@pytest.fixture(scope="module")
def history(smoke_analysis) -> pd.DataFrame:
    base = history_rows(smoke_analysis.run_dir)
    rng = np.random.default_rng(0)
    frames = []
    for run in range(20):
        for copy in range(3):
            rows = base.assign(run_id=f"run{run:02d}", git_commit=f"{run:02d}" + "a" * 38,
                               run_date=f"2026-01-{run + 1:02d}T00:00:00+00:00",
                               commit_date=None, width=base["width"] + 100 * copy)
            noise = rng.normal(0, 0.01, size=len(rows))
            rows["log10_mean"] = rows["log10_mean"] + noise
            frames.append(rows)
    return pd.concat(frames, ignore_index=True)


def test_history_page_data(benchmark, history):
    data, _ = benchmark(page_data, history, tolerance=1.01)
    keys = ["width", "depth", "residual", "param", "metric"]
    assert len(data["series"]) == len(history.drop_duplicates(keys))
