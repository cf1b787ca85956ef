"""Engine vs the blog's loop, per cell: ``make perf`` (pytest-benchmark).

Under ``make test`` (benchmarks disabled) each case runs once as a smoke test; ``make perf``
times them and prints per cell: seeds/s of both, their ratio, and the engine's achieved
memory bandwidth against the device's measured copy bandwidth.
"""

from __future__ import annotations

import pytest
import torch
from timing import copy_bandwidth, record

from gradprobe.bench.engine.batched import measure_group
from gradprobe.bench.init.initialization import mlp_param_specs
from gradprobe.bench.models.reference import naive_measure
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.sweep import Cell

# (depth, width): (seeds per naive round, seeds per engine call)
# The naive loop's rounds are few and short: with 3 seeds a round at (50, 256) its median
# moved 30% between runs, and with it the ratios and the share kept under load.
CPU_CELLS = {(5, 10): (100, 10_000), (20, 64): (20, 1_000), (50, 256): (8, 48)}
CUDA_CELLS = {(5, 10): (100, 200_000), (20, 64): (50, 50_000), (50, 256): (10, 2_000),
              (50, 1024): (3, 64)}


def key(depth: int, width: int, device: str, init_rng: str | None = None) -> str:
    base = f"({depth}, {width})|{device}"
    return base if init_rng is None else f"{base}|{init_rng}"


def engine_call(depth, width, device, seeds, init_rng, max_memory=2**30):
    cell = Cell(ModelConfig(depth=depth, width=width, init_rng=init_rng), DataConfig(),
                device, "float32", tuple(range(seeds)))
    return lambda: measure_group([cell], max_memory=max_memory)


@pytest.mark.parametrize("depth,width", list(CPU_CELLS))
def test_naive_cpu(benchmark, depth, width):
    seeds = CPU_CELLS[(depth, width)][0]
    model = ModelConfig(depth=depth, width=width)
    naive_measure(model, DataConfig(), range(2))  # warm up
    result = benchmark.pedantic(naive_measure, args=(model, DataConfig(), range(seeds)),
                                rounds=5, iterations=1)
    assert len(result) == seeds
    record(benchmark, "naive", key(depth, width, "cpu"), seeds)


@pytest.mark.parametrize("depth,width", list(CPU_CELLS))
def test_engine_cpu(benchmark, depth, width):
    seeds = CPU_CELLS[(depth, width)][1]
    run = engine_call(depth, width, "cpu", seeds, "torch_compat")
    engine_call(depth, width, "cpu", 8, "torch_compat")()  # warm up
    result = benchmark.pedantic(run, rounds=5, iterations=1)
    assert len(next(iter(result.values())).seeds) == seeds
    params = sum(s.numel for s in mlp_param_specs(ModelConfig(depth=depth, width=width)))
    record(benchmark, "engine", key(depth, width, "cpu", "torch_compat"), seeds, params)
    copy_bandwidth("cpu")


@pytest.mark.parametrize("depth,width", list(CUDA_CELLS))
def test_naive_cuda(benchmark, cuda_only, depth, width):
    seeds = CUDA_CELLS[(depth, width)][0]
    model = ModelConfig(depth=depth, width=width)
    naive_measure(model, DataConfig(), range(2), device="cuda")
    result = benchmark.pedantic(naive_measure, args=(model, DataConfig(), range(seeds)),
                                kwargs={"device": "cuda"}, rounds=3, iterations=1)
    assert len(result) == seeds
    record(benchmark, "naive", key(depth, width, "cuda"), seeds)


@pytest.mark.parametrize("init_rng", ["device", "torch_compat"])
@pytest.mark.parametrize("depth,width", list(CUDA_CELLS))
def test_engine_cuda(benchmark, cuda_only, depth, width, init_rng):
    seeds = CUDA_CELLS[(depth, width)][1]
    if init_rng == "torch_compat" and (depth, width) == (50, 1024):
        seeds = 16  # the CPU stream for 52M values per seed is the bottleneck here
    budget = torch.cuda.get_device_properties(0).total_memory // 2
    run = engine_call(depth, width, "cuda", seeds, init_rng, max_memory=budget)
    engine_call(depth, width, "cuda", 8, init_rng, max_memory=budget)()
    result = benchmark.pedantic(run, rounds=3, iterations=1)
    assert len(next(iter(result.values())).seeds) == seeds
    params = sum(s.numel for s in mlp_param_specs(ModelConfig(depth=depth, width=width)))
    record(benchmark, "engine", key(depth, width, "cuda", init_rng), seeds, params)
    copy_bandwidth("cuda")
