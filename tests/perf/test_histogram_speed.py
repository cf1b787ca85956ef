"""Cost of the log10 |g| histograms (``make perf``): the CPU kernel, the torch path it
replaces on the CPU, and the records' metric reductions, on the gradients of the default
sweep's largest cell (48 seeds x 256 x 256 per parameter, float32), and the kernel on what a
deep plain ReLU net's weight gradient looks like under vmap: transposed in memory, 60% of
its rows zero (dead units; 61% of the default sweep's entries are exact zeros).

Under ``make test`` (benchmarks disabled) each case runs once as a smoke test.
"""

from __future__ import annotations

import pytest
import torch

from gradprobe.bench.engine.histograms import _cpu_histogram, _device_histogram
from gradprobe.bench.engine.metrics import _param_stats
from gradprobe.bench.plan.histogram_bins import HistogramConfig

CONFIG = HistogramConfig()


@pytest.fixture(scope="module")
def grad() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    scale = 10 ** torch.empty(48, 256, 1).uniform_(-30, -2, generator=generator)
    return torch.randn(48, 256, 256, generator=generator) * scale


@pytest.mark.parametrize("path", ["cpu_kernel", "torch_bucketize"])
def test_histogram_cpu(benchmark, grad, path):
    count = _cpu_histogram if path == "cpu_kernel" else _device_histogram
    count(grad, CONFIG)  # warm up (compiles the kernel on first use)
    counts = benchmark.pedantic(count, args=(grad, CONFIG), rounds=5, iterations=1)
    assert int(counts.sum()) == grad.numel()


@pytest.fixture(scope="module")
def dead_unit_grad(grad) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    alive = torch.rand(48, 256, 1, generator=generator) > 0.6
    return (grad * alive).transpose(1, 2)


def test_histogram_cpu_dead_units_transposed(benchmark, dead_unit_grad):
    _cpu_histogram(dead_unit_grad, CONFIG)
    counts = benchmark.pedantic(_cpu_histogram, args=(dead_unit_grad, CONFIG), rounds=5,
                                iterations=1)
    assert int(counts.sum()) == dead_unit_grad.numel()


def test_metric_reductions_cpu(benchmark, grad):
    _param_stats(grad, grad)
    stats = benchmark.pedantic(_param_stats, args=(grad, grad), rounds=5, iterations=1)
    assert len(stats) == 6
