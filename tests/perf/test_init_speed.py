"""Exact initial state: draws per second of torch's per-seed loop and of the compiled
MT19937 kernel, one thread each, and of the XXH3 fingerprint of the same rows
(``make perf``).

Both fill the same rows with the same bits (checked here too); the summary prints draws/s,
their ratio, and the bytes the kernel stores per second against the copy bandwidth.
"""

from __future__ import annotations

import pytest
import torch
from timing import TABLE, copy_bandwidth

from gradprobe.bench.init import initialization as init
from gradprobe.bench.plan.config import DataConfig, ModelConfig

# (depth, width, seeds per call): 4 seeds at (20, 64) fill 1.2 MB, which stays in cache; the
# others (20 MB, 51 MB) go to memory, where the stores, not the generator, set the pace.
CELLS = [(20, 64, 4), (20, 64, 64), (50, 256, 4)]
# "fingerprint": XXH3 of the filled rows (initialization.fingerprint), which every exact
# draw also pays: the generator's cost set beside the records' checksum.
GENERATORS = ("torch_loop", "compiled", "fingerprint")


def _setup(depth: int, width: int, seeds: int):
    model, data = ModelConfig(depth=depth, width=width), DataConfig()
    specs = init.mlp_param_specs(model)
    n_inputs = data.batch_size * model.width
    runs = init._vectorised_runs(model, data, specs, n_inputs)
    rows = torch.zeros(seeds, sum(s.numel for s in specs) + n_inputs)
    return runs, rows


def _fill(generator: str, runs, rows):
    seeds = list(range(len(rows)))
    if generator == "torch_loop":
        merged = init.merge_runs(runs)
        return lambda: init._fill_torch_runs(seeds, merged, rows)
    kernel = init.compiled_generator()
    assert kernel is not None, "the compiled generator does not reproduce torch here"
    if generator == "fingerprint":
        init._fill_compiled(kernel, seeds, runs, rows)
        return lambda: init.fingerprint(rows.numpy())
    return lambda: init._fill_compiled(kernel, seeds, runs, rows)


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("depth,width,seeds", CELLS)
def test_exact_generation(benchmark, depth, width, seeds, generator):
    runs, rows = _setup(depth, width, seeds)
    fill = _fill(generator, runs, rows)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fill()  # warm up (and compile)
        benchmark.pedantic(fill, rounds=5, iterations=1)
    finally:
        torch.set_num_threads(threads)
    expected = torch.zeros_like(rows)
    _fill("torch_loop", runs, expected)()
    assert torch.equal(rows, expected)
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return
    draws = runs[-1][1] * len(rows) / stats.stats.median
    key = f"({depth}, {width}) x{seeds}|{generator}"
    TABLE.draws[key] = draws
    TABLE.stored[key] = rows.numel() * 4 / stats.stats.median
    benchmark.extra_info.update(kind="draws", key=key, draws_per_second=draws)
    copy_bandwidth("cpu")
