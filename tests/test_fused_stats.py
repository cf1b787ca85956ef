"""The compiled one-pass statistics: the same numbers as the torch reductions they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.bench.engine import fused_stats, metrics
from gradprobe.bench.engine.batched import draw_state, run_chunk
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.sweep import Cell


def _torch_stats(param, grad):
    """The torch path of metrics._param_stats, as float64 numpy ``(6, S)``."""
    before = metrics.FUSED_MIN_NUMEL
    metrics.FUSED_MIN_NUMEL = 1 << 62
    try:
        return np.stack([s.double().numpy() for s in metrics._param_stats(param, grad)])
    finally:
        metrics.FUSED_MIN_NUMEL = before


def _tensors(seed: int = 0):
    """A transposed gradient (as bmm's backward gives) and a parameter that is a strided
    slice of a wider buffer (as the draw buffer gives), 37 x 19 entries per seed (not a
    multiple of the 16 lanes), with exact zeros and entries whose squares underflow."""
    generator = torch.Generator().manual_seed(seed)
    grad = torch.randn(5, 19, 37, generator=generator).transpose(1, 2)
    grad[0, :3] = 0.0
    grad[1] *= 1e-30  # float32 squares of these underflow; the float64 sums do not
    buffer = torch.randn(5, 1000, generator=generator)
    param = buffer[:, 100:100 + 37 * 19].view(5, 37, 19)
    return param, grad


def test_fused_statistics_equal_the_torch_reductions():
    param, grad = _tensors()
    fused = np.stack([s.numpy() for s in fused_stats.param_stats(param, grad)])
    expected = _torch_stats(param, grad)
    assert fused.shape == expected.shape == (6, 5)
    np.testing.assert_allclose(fused, expected, rtol=2e-6)
    assert fused[4, 0] == 3 * 19 and fused[3].sum() == 0  # zero and non-finite counts


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_gradient_is_left_to_the_torch_path(bad):
    param, grad = _tensors()
    grad[2, 1, 1] = bad
    assert fused_stats.param_stats(param, grad) is None


def test_rows_that_are_not_one_block_are_left_to_the_torch_path():
    param, _ = _tensors()
    every_other = torch.randn(5, 40, 19)[:, ::2]
    assert fused_stats.dense_rows(every_other) is None
    assert fused_stats.param_stats(param, every_other) is None


def test_engine_records_agree_whichever_path_reduces_them(monkeypatch):
    cell = Cell(ModelConfig(depth=4, width=16), DataConfig(), "cpu", "float32",
                tuple(range(12)))
    state = draw_state(cell, cell.seeds)
    monkeypatch.setattr(metrics, "FUSED_MIN_NUMEL", 1 << 62)
    reference = run_chunk(cell, state).values
    monkeypatch.setattr(metrics, "FUSED_MIN_NUMEL", 1)
    fused = run_chunk(cell, state).values
    np.testing.assert_allclose(fused, reference, rtol=2e-6)


def test_a_seeds_statistics_do_not_depend_on_its_chunk(monkeypatch):
    """Bug (CI): a chunk's total size chose between the float64 fused path and torch's
    float32 one, and the chunking follows the memory budget and the machine's load, so a
    killed-and-resumed run's grad_mean_abs differed from an uninterrupted one's by 1.6e-5.
    The path is now chosen per seed's gradient size; a NaN row elsewhere in the chunk no
    longer moves the finite rows to the other path."""
    # 16 seeds x 256^2 is 2^20 values: the old rule reduced this chunk fused, one seed not.
    cell = Cell(ModelConfig(depth=3, width=256), DataConfig(), "cpu", "float32",
                tuple(range(16)))
    whole = run_chunk(cell, draw_state(cell, cell.seeds)).values
    for seed in (0, 4):
        alone = Cell(cell.model, cell.data, "cpu", "float32", (seed,))
        one = run_chunk(alone, draw_state(alone, alone.seeds)).values
        np.testing.assert_array_equal(one[0], whole[seed])
    monkeypatch.setattr(metrics, "FUSED_MIN_NUMEL", 1)  # the small tensors go fused too
    param, grad = _tensors()
    poisoned = grad.clone()
    poisoned[2, 1, 1] = float("nan")
    clean = [s.double() for s in metrics._param_stats(param, grad)]
    mixed = [s.double() for s in metrics._param_stats(param, poisoned)]
    for a, b in zip(clean, mixed, strict=True):
        np.testing.assert_array_equal(a[[0, 1, 3, 4]].numpy(), b[[0, 1, 3, 4]].numpy())
