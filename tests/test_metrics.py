"""Reductions: exact on hand-made tensors, and safe from float32 underflow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradprobe.bench.engine import metrics
from gradprobe.bench.engine.batched import measure_group
from gradprobe.bench.engine.cpu_policy import CpuPolicy
from gradprobe.bench.engine.metrics import (
    _rms,
    _stats_by_shape,
    _torch_stats,
    safe_mean_abs,
    safe_norm,
    scaled_norm,
)
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.sweep import Cell


def test_scaled_norm_hand_computed():
    rows = torch.tensor([[3.0, 4.0], [0.0, 0.0], [float("inf"), 1.0], [-6.0, 8.0]]).abs()
    norms = scaled_norm(rows, rows.amax(dim=1))
    assert norms[0] == 5 and norms[1] == 0 and math.isinf(norms[2]) and norms[3] == 10


def test_l2_and_rms_of_tiny_float32_values_do_not_underflow():
    # Regression: deep default-init ReLU nets have gradient entries ~1e-29, representable in
    # float32, whose squares underflow; grad_l2 and grad_act_rms came out exactly 0 and those
    # seeds were dropped from the log statistics as "zero".
    tiny = torch.tensor([[3e-29, 4e-29]], dtype=torch.float32)
    assert torch.linalg.vector_norm(tiny, dim=1)[0] == 0  # the failure this guards against
    assert scaled_norm(tiny.abs(), tiny.abs().amax(dim=1))[0].item() == pytest.approx(5e-29,
                                                                                      rel=1e-6)
    assert _rms(tiny.view(1, 1, 2))[0].item() == pytest.approx(5e-29 / math.sqrt(2), rel=1e-6)


def test_rms_matches_definition():
    t = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    expected = t.square().mean(dim=(1, 2)).sqrt()
    assert torch.allclose(_rms(t), expected, rtol=1e-6)


def test_mean_abs_of_huge_finite_float32_values_does_not_overflow():
    # Regression: 64 finite entries of 8e37 sum past float32's maximum (3.4e38), so
    # grad_mean_abs came out inf with grad_nonfinite = 0, and the seed was treated as
    # non-finite by the analysis and by compare.
    huge = torch.full((2, 8, 8), 8e37, dtype=torch.float32)
    huge[1] = 1.0
    assert math.isinf(huge[0].abs().mean())  # the failure this guards against
    peak = huge.abs().amax(dim=(1, 2))
    mean = safe_mean_abs(huge.abs(), peak)
    assert mean[0].item() == pytest.approx(8e37, rel=1e-6) and mean[1].item() == 1.0
    infinite = torch.tensor([[float("inf"), 1.0]])
    assert math.isinf(safe_mean_abs(infinite, infinite.amax(dim=1))[0])  # a real inf stays


def test_parameters_of_one_shape_reduced_together_give_each_its_own_statistics():
    # Small CPU gradients of one shape are stacked for one set of reductions; every seed's
    # row must come out bit for bit as when each parameter is reduced alone, including rows
    # of zeros (a dead layer), of subnormals, of huge values, and non-finite ones.
    gen = torch.Generator().manual_seed(5)
    grads = [torch.randn(6, 10, 10, generator=gen) for _ in range(3)] + \
        [torch.randn(6, 1, 10, generator=gen)]
    params = [torch.randn(g.shape, generator=gen) for g in grads]
    grads[0][1] = 0.0
    grads[1][2] *= 1e-40
    grads[2][3] = 3e37
    grads[1][4, 0, 0] = float("nan")
    grads[0][5, 2, 2] = float("inf")
    together = _stats_by_shape(params, grads, {})
    for param, grad, stats in zip(params, grads, together, strict=True):
        alone = _torch_stats(param, grad)
        for column, expected in zip(stats, alone, strict=True):
            assert torch.equal(column.nan_to_num(-1.0), expected.nan_to_num(-1.0))
    assert together[1][1][2] > 0 and together[0][1][1] == 0  # rescued; truly zero


def test_a_norm_of_zero_rows_is_not_redone_when_the_rows_maxima_are_known(monkeypatch):
    calls = []
    original = metrics.scaled_norm
    monkeypatch.setattr(metrics, "scaled_norm", lambda *a: calls.append(1) or original(*a))
    dead = torch.zeros(4, 3, 3)
    assert bool((safe_norm(dead, dead.abs().amax(dim=(1, 2))) == 0).all()) and not calls
    tiny = torch.full((2, 3, 3), 1e-30)
    assert bool((safe_norm(tiny, tiny.abs().amax(dim=(1, 2))) > 0).all()) and calls


@pytest.mark.parametrize("model_kwargs", [
    {"bias": True},
    {"residual": True, "rezero": True, "bias": True},
    {"residual": True, "norm": "layernorm", "bias": True},
])
def test_reducing_parameters_of_one_shape_together_changes_no_record(monkeypatch,
                                                                     model_kwargs):
    # Biases, LayerNorm weights and ReZero scales are grouped too (1-D and scalar
    # parameters): every record must equal the one reduced parameter by parameter.
    cell = Cell(ModelConfig(depth=4, width=6, **model_kwargs), DataConfig(), "cpu",
                "float32", tuple(range(60)))
    together = measure_group([cell], policy=CpuPolicy(1, 1))[cell.cell_id]

    def one_by_one(params, grads, outer):
        return [metrics._param_stats(p, g, outer.get(i))
                for i, (p, g) in enumerate(zip(params, grads, strict=True))]

    monkeypatch.setattr(metrics, "_stats_by_shape", one_by_one)
    alone = measure_group([cell], policy=CpuPolicy(1, 1))[cell.cell_id]
    np.testing.assert_array_equal(together.values, alone.values)
