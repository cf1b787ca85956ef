"""``gradprobe compare`` of 1,000,000 records per side (the blog's setup, plain and
residual, 100,000 seeds each), ``make perf``: the gate streams cell pair by cell pair
(issue 14 item 3), so its time and memory follow the pairs, not the runs.

The run (``million_records`` in conftest.py) is built once per session and compared with
itself (every cell paired by seed); only the comparison is timed (reading the cell files, the tests,
nothing written), after one warm-up. A few seeds as a smoke test under ``make test``.
"""

from __future__ import annotations

import gradprobe


def test_compare_speed(benchmark, million_records):
    run_dir, records = million_records
    gradprobe.compare(run_dir, run_dir, write=False)  # warm-up: imports, page cache
    result = benchmark.pedantic(gradprobe.compare, args=(run_dir, run_dir),
                                kwargs={"write": False},
                                rounds=1 if benchmark.disabled else 3, iterations=1)
    assert result.passed and result.counts()["unchanged"] == len(result.verdicts)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info.update(records=records, seconds=stats.stats.median,
                                    records_per_second=2 * records / stats.stats.median)
