"""Hooks of the speed suite (``make perf``): the per-cell results table at the end.

Every timing follows nanoGPT's bench.py: warm up, synchronise the device, time only the
measured call, report medians (pytest-benchmark's statistics).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from timing import BYTES_PER_PARAM, TABLE, copy_bandwidth

# GRADPROBE_PERF_COMPETE=1 (make perf-loaded): run the suite beside a competing torch process.
COMPETE = os.environ.get("GRADPROBE_PERF_COMPETE") == "1"


@pytest.fixture(scope="session", autouse=True)
def competing_torch_process():
    """Start tests/perf/competitor.py for the whole session when asked to, and stop it."""
    if not COMPETE:
        yield None
        return
    script = Path(__file__).with_name("competitor.py")
    process = subprocess.Popen([sys.executable, str(script)])
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _load_line() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    if TABLE.draws:
        _draws_table(write)
    if len(TABLE.whole) == 2:
        gradprobe, naive = TABLE.whole["gradprobe"], TABLE.whole["naive"]
        write("")
        write(f"whole process, (20, 64) x 2000 seeds x plain/residual: gradprobe run "
              f"{gradprobe:.2f} s, the blog's loop {naive:.2f} s ({naive / gradprobe:.1f}x)")
    if TABLE.analysis:
        _analysis_line(write)
    if not TABLE.engine:
        return
    write("")
    where = "beside a competing torch process" if COMPETE else "no competing process started"
    write(f"gradprobe engine vs the blog's naive loop (median time per seed; {where}; "
          f"{_load_line()})")
    header = f"{'cell':<28}{'naive seeds/s':>15}{'engine seeds/s':>16}{'ratio':>10}" \
             f"{'GB/s':>9}{'% of copy':>11}"
    write(header)
    write("-" * len(header))
    for key, engine in TABLE.engine.items():
        device = key.split("|")[1]
        naive_key = "|".join(key.split("|")[:2])
        naive = TABLE.naive.get(naive_key)
        achieved = TABLE.params[key] * BYTES_PER_PARAM / engine
        copy = copy_bandwidth(device)
        ratio = f"{naive / engine:.1f}x" if naive else "n/a"
        naive_rate = f"{1 / naive:.4g}" if naive else "n/a"
        write(f"{key:<28}{naive_rate:>15}{1 / engine:>16.4g}{ratio:>10}"
              f"{achieved / 1e9:>9.2f}{100 * achieved / copy:>10.1f}%")
    for device, value in TABLE.bandwidth.items():
        write(f"measured copy bandwidth on {device}: {value / 1e9:.1f} GB/s")


MILLION_SEEDS = 100_000  # x 2 cells (plain, residual) x 5 parameters = 1M records


@pytest.fixture(scope="session")
def million_records(request, tmp_path_factory):
    """``(run directory, records)``: the ``seed`` preset run with 100,000 seeds, or 8 when
    benchmarks are disabled (``make test``); built once per session, for the analysis and
    compare benchmarks."""
    import gradprobe
    from gradprobe.bench.store.records import file_rows, record_files

    # pytest-benchmark's own rule (BenchmarkSession.disabled); pyproject adds --benchmark-disable.
    option = request.config.getoption
    enabled = option("benchmark_enable") or not option("benchmark_disable")
    run_dir = tmp_path_factory.mktemp("million-records") / "run"
    gradprobe.run("seed", seeds=MILLION_SEEDS if enabled else 8, out=run_dir, progress=False)
    return run_dir, sum(file_rows(p) for p in record_files(run_dir))


@pytest.fixture
def cuda_only():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def _draws_table(write) -> None:
    write("")
    write(f"exact initial state, one thread (draws per second; {_load_line()})")
    header = f"{'cell|generator':<28}{'Mdraws/s':>10}{'vs torch':>10}{'stored GB/s':>13}" \
             f"{'% of copy':>11}"
    write(header)
    write("-" * len(header))
    copy = copy_bandwidth("cpu")
    for key, draws in TABLE.draws.items():
        base = TABLE.draws.get(key.split("|")[0] + "|torch_loop")
        ratio = f"{draws / base:.2f}x" if base else "n/a"
        stored = TABLE.stored[key]
        write(f"{key:<28}{draws / 1e6:>10.0f}{ratio:>10}{stored / 1e9:>13.2f}"
              f"{100 * stored / copy:>10.1f}%")


def _analysis_line(write) -> None:
    records, seconds = TABLE.analysis["records"], TABLE.analysis["seconds"]
    write("")
    write(f"gradprobe analyze: {records:,} records in {seconds:.2f} s (median), "
          f"{records / seconds:,.0f} records/s = {10 * records / seconds / 1e6:.2f}M records "
          f"per 10 s ({_load_line()})")
