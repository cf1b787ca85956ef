"""``gradprobe compare`` of 1,000,000 records per side (the blog's setup, plain and
residual, 100,000 seeds each), ``make perf``: the gate streams cell pair by cell pair
(issue 14 item 3), so its time and memory follow the pairs, not the runs.

The run is built once per session with the real sweep and compared with itself (every
cell paired by seed); only the comparison is timed (reading the cell files, the tests,
nothing written), after one warm-up. A few seeds as a smoke test under ``make test``.
"""

from __future__ import annotations

import pytest

import gradprobe
from gradprobe.bench.store.records import file_rows, record_files

SEEDS = 100_000  # x 2 cells x 5 parameters = 1M records per side


@pytest.fixture(scope="session")
def million_record_run(request, tmp_path_factory):
    """``(run directory, records)``: the ``seed`` preset run with 100,000 seeds, or 8 when
    benchmarks are disabled (``make test``)."""
    option = request.config.getoption
    enabled = option("benchmark_enable") or not option("benchmark_disable")
    run_dir = tmp_path_factory.mktemp("compare-speed") / "run"
    gradprobe.run("seed", seeds=SEEDS if enabled else 8, out=run_dir, progress=False)
    return run_dir, sum(file_rows(p) for p in record_files(run_dir))


def test_compare_speed(benchmark, million_record_run):
    run_dir, records = million_record_run
    gradprobe.compare(run_dir, run_dir, write=False)  # warm-up: imports, page cache
    result = benchmark.pedantic(gradprobe.compare, args=(run_dir, run_dir),
                                kwargs={"write": False},
                                rounds=1 if benchmark.disabled else 3, iterations=1)
    assert result.passed and result.counts()["unchanged"] == len(result.verdicts)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info.update(records=records, seconds=stats.stats.median,
                                    records_per_second=2 * records / stats.stats.median)
