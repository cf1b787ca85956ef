"""Timing state of the speed suite, shared by its conftest and tests.

Kept out of ``conftest.py`` because pytest imports a conftest under its own module name: a
test importing it would get a second copy of the results table.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import torch

from gradprobe.bench.engine.batched import synchronize

# Bytes each parameter value moves at least once per seed: generated (written), read in the
# forward pass, read in the backward pass, gradient written, gradient read by the reduction.
BYTES_PER_PARAM = 5 * 4


@dataclass
class PerfTable:
    """Per-seed medians collected during the session, printed at the end."""

    naive: dict[str, float] = field(default_factory=dict)  # cell key -> seconds per seed
    engine: dict[str, float] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)  # cell key -> parameters per seed
    bandwidth: dict[str, float] = field(default_factory=dict)  # device -> copy bytes/s
    draws: dict[str, float] = field(default_factory=dict)  # "cell|generator" -> draws/s
    stored: dict[str, float] = field(default_factory=dict)  # "cell|generator" -> bytes/s
    whole: dict[str, float] = field(default_factory=dict)  # gradprobe | naive -> seconds
    analysis: dict[str, float] = field(default_factory=dict)  # records, seconds (analyze)


TABLE = PerfTable()


def copy_bandwidth(device: str) -> float:
    """Measured device-to-device copy bandwidth (bytes read + written per second)."""
    if device in TABLE.bandwidth:
        return TABLE.bandwidth[device]
    size = 2**28 if device.startswith("cuda") else 2**26  # bytes
    src = torch.empty(size // 4, device=device).uniform_()
    dst = torch.empty_like(src)
    times = []
    for _ in range(7):
        synchronize(src.device)
        started = time.perf_counter()
        dst.copy_(src)
        synchronize(src.device)
        times.append(time.perf_counter() - started)
    TABLE.bandwidth[device] = 2 * size / statistics.median(times[2:])
    return TABLE.bandwidth[device]


def record(benchmark, kind: str, key: str, seeds: int, params: int | None = None) -> None:
    """Store the median time per seed of a finished benchmark (enabled runs only)."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return
    per_seed = stats.stats.median / seeds
    getattr(TABLE, kind)[key] = per_seed
    if params is not None:
        TABLE.params[key] = params
    benchmark.extra_info.update(seeds=seeds, seconds_per_seed=per_seed, kind=kind, key=key)
