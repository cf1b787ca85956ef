"""CUDA: the same numbers as the CPU from the same weights. Skipped where no GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.bench.engine.batched import bytes_per_seed, measure_group
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.sweep import Cell

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


@pytest.mark.parametrize("depth,width", [(5, 10), (20, 64)])
@pytest.mark.parametrize("residual", [False, True])
def test_cuda_matches_cpu_from_the_same_weights(depth, width, residual):
    torch.backends.cuda.matmul.allow_tf32 = False
    seeds = tuple(range(256))
    model = ModelConfig(depth=depth, width=width, residual=residual)
    cpu, cuda = (Cell(model, DataConfig(), device, "float32", seeds) for device in
                 ("cpu", "cuda"))
    a = measure_group([cpu])[cpu.cell_id]
    b = measure_group([cuda])[cuda.cell_id]
    assert list(a.fingerprints) == list(b.fingerprints)  # the very same initial weights
    va, vb = a.values[:, :, 0], b.values[:, :, 0]
    finite = (va > 0) & (vb > 0)
    rel = np.abs(va - vb)[finite] / np.maximum(va, vb)[finite]
    assert rel.max() < 1e-4


def test_device_rng_on_cuda():
    cell = Cell(ModelConfig(depth=5, width=64, init_rng="device"), DataConfig(), "cuda",
                "float32", tuple(range(2048)))
    result = measure_group([cell])[cell.cell_id]
    assert np.isfinite(result.values).all() and len(set(result.fingerprints)) == 2048


def test_memory_budget_is_respected_on_cuda():
    cell = Cell(ModelConfig(depth=20, width=256, residual=True), DataConfig(), "cuda",
                "float32", tuple(range(64)))
    budget = 16 * bytes_per_seed(cell)
    torch.cuda.reset_peak_memory_stats()
    measure_group([cell], max_memory=budget)
    assert torch.cuda.max_memory_allocated() <= budget


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_cuda_dtypes(dtype):
    cell = Cell(ModelConfig(residual=True), DataConfig(), "cuda", dtype, tuple(range(128)))
    result = measure_group([cell])[cell.cell_id]
    assert result.values.shape == (128, 5, 8)
