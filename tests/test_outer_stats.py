"""Rank-one weight gradients reduced from their factors: the statistics of the float32
gradient autograd would have materialised, whichever threads or chunks compute them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.bench.engine import fused_stats, metrics, outer_stats
from gradprobe.bench.engine.batched import draw_state, run_chunk
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.histogram_bins import HistogramConfig
from gradprobe.bench.plan.sweep import Cell


def _factors(seed: int = 0, seeds: int = 5, out: int = 23, width: int = 37):
    """``delta`` ``(S, 1, out)`` and ``inputs`` ``(S, 1, in)`` with exact zeros (dead ReLUs)
    and, in seed 1, products below float32's smallest normal number (a deep plain network's
    gradients: the float32 product rounds to a subnormal or to zero)."""
    generator = torch.Generator().manual_seed(seed)
    delta = torch.randn(seeds, 1, out, generator=generator)
    inputs = torch.randn(seeds, 1, width, generator=generator).relu()
    delta[0, 0, :4] = 0.0
    delta[1] *= 1e-22
    inputs[1] *= 1e-20
    return outer_stats.OuterGradient(delta, inputs)


def test_factored_statistics_equal_those_of_the_materialised_gradient():
    grad = _factors()
    dense = grad.materialise()
    assert dense.shape == grad.shape == (5, 23, 37)
    assert 0 < dense[1].abs().max() < torch.finfo(torch.float32).tiny  # subnormal products
    expected = fused_stats.row_stats(fused_stats.dense_rows(dense), 5)
    (factored,) = outer_stats.row_stats([grad], threads=1)
    # max |g|, zero and non-finite counts are exact: the same float32 products
    np.testing.assert_array_equal(factored[:, 2:], expected[:, 2:])
    # the float64 sums differ only in the order they add the same terms
    np.testing.assert_allclose(factored[:, :2], expected[:, :2], rtol=1e-12, atol=0)
    assert factored[0, 3] == 4 * 37 + 19 * int((grad.inputs[0] == 0).sum())


def test_threads_split_seeds_without_changing_a_bit():
    grads = [_factors(seed) for seed in range(3)]
    one = outer_stats.row_stats(grads, threads=1)
    for threads in (2, 3, 8):
        for a, b in zip(one, outer_stats.row_stats(grads, threads=threads), strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_non_finite_product_is_counted():
    grad = _factors()
    grad.delta[3, 0, 2] = float("inf")
    (factored,) = outer_stats.row_stats([grad], threads=2)
    assert factored[3, 4] == 37 and not factored[[0, 1, 2, 4], 4].any()


@pytest.mark.parametrize("batch,dtype,applies", [(1, torch.float32, True),
                                                 (2, torch.float32, False),
                                                 (1, torch.float64, False)])
def test_only_one_float32_input_row_makes_a_rank_one_gradient(batch, dtype, applies):
    weight = torch.zeros(4, 8, 16, dtype=dtype)
    assert outer_stats.applies(weight, torch.zeros(4, batch, 16, dtype=dtype)) is applies


def _records(cell: Cell, monkeypatch, factored: bool) -> np.ndarray:
    with monkeypatch.context() as patch:
        if not factored:
            patch.setattr(outer_stats, "applies", lambda weight, inputs: False)
        return run_chunk(cell, draw_state(cell, cell.seeds)).values


@pytest.mark.parametrize("model", [
    ModelConfig(depth=50, width=64),  # plain: gradients deep in float32's subnormals
    ModelConfig(depth=4, width=64, residual=True, norm="layernorm", norm_position="pre"),
    ModelConfig(depth=3, width=80, residual=True, residual_form="pre", bias=True),
], ids=["plain-subnormal", "residual-layernorm", "pre-form-bias"])
def test_engine_records_are_the_same_with_and_without_factored_gradients(model, monkeypatch):
    cell = Cell(model, DataConfig(), "cpu", "float32", tuple(range(6)))
    factored = _records(cell, monkeypatch, True)
    dense = _records(cell, monkeypatch, False)
    columns = [metrics.METRICS.index(m) for m in ("grad_mean_abs", "grad_l2")]
    exact = [i for i in range(len(metrics.METRICS)) if i not in columns]
    np.testing.assert_array_equal(factored[..., exact], dense[..., exact])
    np.testing.assert_allclose(factored[..., columns], dense[..., columns], rtol=1e-12)
    if not model.residual:  # the case this exists for: float32's gradual underflow
        peak = dense[..., metrics.METRICS.index("grad_max_abs")]
        assert (peak < np.finfo(np.float32).tiny).any()


def test_a_non_finite_gradient_gets_the_dense_paths_records(monkeypatch):
    """A seed whose activations overflow (init_gain 1e12 over 8 layers) has NaN and inf
    gradients; their statistics are the torch path's, as without factoring."""
    cell = Cell(ModelConfig(depth=8, width=64, init_gain=1e12), DataConfig(), "cpu",
                "float32", tuple(range(3)))
    factored = _records(cell, monkeypatch, True)
    dense = _records(cell, monkeypatch, False)
    assert not np.isfinite(dense[..., 0]).all()
    np.testing.assert_array_equal(factored, dense)


def test_histograms_count_the_same_entries_from_factors(monkeypatch):
    """With histograms on (the default sweep's) a factored gradient is materialised for its
    turn: the same float32 products, so every count is the same."""
    cell = Cell(ModelConfig(depth=50, width=64), DataConfig(), "cpu", "float32",
                tuple(range(4)), histograms=HistogramConfig())
    with monkeypatch.context() as patch:
        patch.setattr(outer_stats, "applies", lambda weight, inputs: False)
        dense = run_chunk(cell, draw_state(cell, cell.seeds))
    factored = run_chunk(cell, draw_state(cell, cell.seeds))
    np.testing.assert_array_equal(factored.histograms, dense.histograms)
    assert factored.histograms[..., :-4].sum() > 0  # entries landed in the bins
