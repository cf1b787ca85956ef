"""Rank-one weight gradients formed from their factors have autograd's bits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.bench.engine import rank_one
from gradprobe.bench.engine.batched import measure_group
from gradprobe.bench.engine.cpu_policy import CpuPolicy
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.sweep import Cell


def spread_factors(dtype: torch.dtype, seeds: int, width: int) -> tuple[torch.Tensor, ...]:
    """Factors whose products span the dtype's range: subnormal, underflowing to zero,
    overflowing to inf, exact zeros of both signs, and non-finite entries."""
    gen = torch.Generator().manual_seed(3)
    low = -160 if dtype == torch.float32 else -1100
    exponents = torch.randint(low // 2, -low // 2, (seeds, 1, width), generator=gen)
    delta = (torch.randn(seeds, 1, width, generator=gen, dtype=torch.float64)
             * torch.pow(2.0, exponents.double())).to(dtype)
    inputs = (torch.randn(seeds, 1, width, generator=gen, dtype=torch.float64)
              * torch.pow(2.0, exponents.flip(2).double())).to(dtype)
    delta[:4, 0, 0] = torch.tensor([0.0, -0.0, float("inf"), float("nan")], dtype=dtype)
    inputs[4:6, 0, 0] = torch.tensor([-0.0, float("-inf")], dtype=dtype)
    return delta, inputs


@pytest.mark.parametrize("dtype", rank_one.EXACT_DTYPES)
@pytest.mark.parametrize("width", [1, 3, 10, 64])
def test_a_rank_one_product_has_the_matmul_s_bits(dtype, width):
    delta, inputs = spread_factors(dtype, 200, width)
    # What autograd computes for z = u @ W^T: the gradient of W^T, transposed.
    matmul = torch.bmm(inputs.transpose(1, 2), delta).transpose(1, 2)
    product = rank_one.gradient(delta, inputs)
    assert product.shape == matmul.shape and product.stride() == matmul.stride()
    both_nan = matmul.isnan() & product.isnan()
    same = (matmul == product) | both_nan  # -0.0 == +0.0: the one allowed difference
    assert bool(same.all())
    different_bits = matmul.view(torch.int64 if dtype == torch.float64 else torch.int32) != \
        product.view(torch.int64 if dtype == torch.float64 else torch.int32)
    assert bool((matmul[different_bits & ~both_nan] == 0).all())  # only zeros' signs
    assert int((product == 0).sum()) > 0 and int(torch.isinf(product).sum()) > 0


def test_only_one_row_float_cpu_gradients_are_rank_one_products():
    weight = torch.zeros(4, 3, 5)
    assert rank_one.applies(weight, torch.zeros(4, 1, 5))
    assert not rank_one.applies(weight, torch.zeros(4, 2, 5))  # a batch: a real matmul
    assert not rank_one.applies(weight.half(), torch.zeros(4, 1, 5).half())


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("depth,width,dtype,seeds", [(12, 4, "float32", 300),
                                                     (4, 72, "float64", 12)])
def test_records_with_rank_one_products_equal_autograd_s(monkeypatch, residual, depth,
                                                         width, dtype, seeds):
    # Depth 12 x width 4: many seeds have a dead layer (exact zeros) and deep plain ones
    # have subnormal gradients; every statistic must come out as with autograd's matmul.
    # Width 72 in float64: layers too large for the small path and not float32, so not
    # held as factors either: multiplied out too.
    cell = Cell(ModelConfig(depth=depth, width=width, residual=residual), DataConfig(), "cpu",
                dtype, tuple(range(seeds)))
    policy = CpuPolicy(1, 1)
    products = measure_group([cell], policy=policy)[cell.cell_id]
    monkeypatch.setattr(rank_one, "applies", lambda weight, inputs: False)
    matmuls = measure_group([cell], policy=policy)[cell.cell_id]
    np.testing.assert_array_equal(products.values, matmuls.values)
    np.testing.assert_array_equal(products.loss, matmuls.loss)
    if width == 4:
        assert (products.values[:, :, 0] == 0).any()  # the dead layers were there
