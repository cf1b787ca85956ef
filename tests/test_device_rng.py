"""init_rng = "device": right distributions, independent of chunking, equivalent records."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gradprobe.bench.engine.batched import bytes_per_seed, measure_group
from gradprobe.bench.init.device_rng import block_size, draw_on_device
from gradprobe.bench.init.init_schemes import default_bias_bound, default_weight_bound
from gradprobe.bench.init.initialization import draw_initial_state
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.sweep import Cell


def test_block_size_is_fixed_by_the_network():
    assert block_size(ModelConfig(), DataConfig()) == 1024
    big = block_size(ModelConfig(depth=50, width=1024), DataConfig())
    assert big == 1
    mid = block_size(ModelConfig(depth=20, width=256), DataConfig())
    assert mid & (mid - 1) == 0 and 1 < mid < 1024


@pytest.mark.parametrize("data_input", ["uniform", "normal"])
def test_draws_have_the_nn_linear_distributions(data_input):
    model, data = ModelConfig(depth=3, width=16, bias=True), DataConfig(input=data_input,
                                                                         batch_size=4)
    state = draw_on_device(model, data, list(range(300)), "cpu")
    for spec, param in zip(state.specs, state.params, strict=True):
        bound = default_weight_bound(16) if spec.kind == "weight" else default_bias_bound(16)
        values = param.reshape(-1).numpy() / bound  # U(-1, 1) if right
        assert stats.kstest(values, stats.uniform(-1, 2).cdf).pvalue > 1e-3, spec.name
    inputs = state.inputs.reshape(-1).numpy()
    reference = stats.uniform(0, 1).cdf if data_input == "uniform" else stats.norm.cdf
    assert stats.kstest(inputs, reference).pvalue > 1e-3


@pytest.mark.parametrize("scheme,reference", [
    ("kaiming_normal", stats.norm(0, np.sqrt(2 / 16)).cdf),
    ("xavier_uniform", stats.uniform(-np.sqrt(6 / 32), 2 * np.sqrt(6 / 32)).cdf),
])
def test_schemes_on_the_device_have_their_distributions(scheme, reference):
    model = ModelConfig(depth=3, width=16, bias=True, init=scheme)
    state = draw_on_device(model, DataConfig(), list(range(200)), "cpu")
    for spec, param in zip(state.specs, state.params, strict=True):
        if spec.kind == "weight" and spec.shape == (16, 16):
            assert stats.kstest(param.reshape(-1).numpy(), reference).pvalue > 1e-3
        elif spec.kind == "bias":
            assert (param == 0).all()


def test_orthogonal_on_the_device_is_orthogonal():
    import torch

    model = ModelConfig(depth=3, width=8, init="orthogonal", out_features=3)
    state = draw_on_device(model, DataConfig(), list(range(50)), "cpu")
    hidden, output = state.params[0], state.params[-1]
    eye = torch.eye(8).expand(50, 8, 8)
    assert torch.allclose(hidden @ hidden.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(output @ output.transpose(1, 2), torch.eye(3).expand(50, 3, 3),
                          atol=1e-5)  # wide matrix: orthonormal rows


def test_not_the_torch_stream_but_reproducible():
    model, data = ModelConfig(depth=3, width=8), DataConfig()
    device = draw_on_device(model, data, [0, 1, 2], "cpu")
    again = draw_on_device(model, data, [0, 1, 2], "cpu")
    compat = draw_initial_state(model, data, [0, 1, 2])
    assert device.buffer.equal(again.buffer) and device.fingerprints == again.fingerprints
    assert not device.buffer.equal(compat.buffer)
    assert not set(device.fingerprints) & set(compat.fingerprints)


def test_values_do_not_depend_on_the_memory_budget():
    model = ModelConfig(depth=3, width=64, init_rng="device", residual=True)
    cell = Cell(model, DataConfig(), "cpu", "float32", tuple(range(600)))
    block = block_size(model, DataConfig())
    whole = measure_group([cell])[cell.cell_id]
    chunked = measure_group([cell], max_memory=block * bytes_per_seed(cell))[cell.cell_id]
    assert np.array_equal(whole.values, chunked.values)
    assert list(whole.fingerprints) == list(chunked.fingerprints)


def test_records_are_statistically_equivalent_to_torch_compat():
    seeds = tuple(range(3000))
    logs = {}
    for rng in ("torch_compat", "device"):
        cell = Cell(ModelConfig(init_rng=rng, residual=True), DataConfig(), "cpu", "float32",
                    seeds)
        with np.errstate(divide="ignore"):  # a dead-ReLU seed has a zero gradient; dropped below
            logs[rng] = np.log10(measure_group([cell])[cell.cell_id].values[:, :, 0])
    for layer in range(5):
        a, b = logs["torch_compat"][:, layer], logs["device"][:, layer]
        assert stats.ks_2samp(a[np.isfinite(a)], b[np.isfinite(b)]).pvalue > 1e-3
