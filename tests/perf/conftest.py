"""Hooks of the speed suite (``make perf``): the per-cell results table at the end.

Every timing follows nanoGPT's bench.py: warm up, synchronise the device, time only the
measured call, report medians (pytest-benchmark's statistics).
"""

from __future__ import annotations

import pytest
import torch
from timing import BYTES_PER_PARAM, TABLE, copy_bandwidth


def pytest_terminal_summary(terminalreporter):
    if not TABLE.engine:
        return
    write = terminalreporter.write_line
    write("")
    write("gradprobe engine vs the blog's naive loop (median time per seed)")
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


@pytest.fixture
def cuda_only():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
