"""log10 |g| histograms counted on the device: hand-computed bins, the seed-batched engines
against a literal loop over seeds, and counts that add up to every parameter's size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.bench.engine.batched import bytes_per_seed, run_chunk
from gradprobe.bench.engine.generic import _measure_chunk
from gradprobe.bench.engine.histograms import (
    interval_tables,
    log_histograms,
    param_histogram,
    sub_octave_bits,
)
from gradprobe.bench.engine.training import train_cell
from gradprobe.bench.init.initialization import draw_initial_state
from gradprobe.bench.models.reference import build_reference
from gradprobe.bench.plan.config import DataConfig, ModelConfig, TrainConfig
from gradprobe.bench.plan.histogram_bins import SPECIAL_COUNTS, HistogramConfig
from gradprobe.bench.plan.sweep import Cell

# Bins of one decade from 1e-3 to 10: [-3, -2), [-2, -1), [-1, 0), [0, 1).
DECADES = HistogramConfig(low=-3.0, high=1.0, step=1.0)
N_OVER, N_UNDER, N_ZERO, N_NONFINITE = (DECADES.n_bins + SPECIAL_COUNTS.index(name)
                                        for name in SPECIAL_COUNTS)
SEEDS = (0, 1, 2, 5)


def test_special_counts_are_laid_out_after_the_bins():
    assert SPECIAL_COUNTS == ("n_over", "n_under", "n_zero", "n_nonfinite")
    assert (N_OVER, N_UNDER, N_ZERO, N_NONFINITE) == (4, 5, 6, 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16,
                                   torch.float16])
def test_hand_computed_bins_with_zeros_nonfinite_and_values_out_of_range(dtype):
    grad = torch.tensor([[0.0, -0.0, 5e-4, 2e-3, -0.02, 0.5, 3.0, 50.0,
                          float("inf"), float("-inf"), float("nan"), 0.07]], dtype=dtype)
    counts = param_histogram(grad, DECADES)
    #         [-3,-2) [-2,-1) [-1,0) [0,1)  over under zero nonfinite
    expected = [1, 2, 1, 1, 1, 1, 2, 3]
    assert counts.tolist() == [expected]
    assert counts.dtype == torch.int64


def test_each_seed_is_counted_on_its_own_row():
    grad = torch.tensor([[[3e-2, 3e-2], [0.0, 5.0]],
                         [[1e-9, 20.0], [0.5, float("nan")]]])  # (S=2, 2, 2)
    assert param_histogram(grad, DECADES).tolist() == [[0, 2, 0, 1, 0, 0, 1, 0],
                                                       [0, 0, 1, 0, 1, 1, 0, 1]]


def test_edges_are_the_documented_quarter_decades():
    config = HistogramConfig()
    assert config.n_bins == 180 and config.n_counts == 184
    assert config.edges[0] == -40.0 and config.edges[-1] == 5.0
    np.testing.assert_allclose(np.diff(config.edges), 0.25)


def _loop_histograms(model: ModelConfig, data: DataConfig, config: HistogramConfig,
                     dtype=torch.float64) -> np.ndarray:
    """The literal loop: per seed ``torch.manual_seed(s)``, build, forward, loss, backward,
    then the histogram of each ``param.grad``. ``(S, P, n_counts)``."""
    rows = []
    for seed in SEEDS:
        net, x = build_reference(model, data, seed, dtype)
        y = net(x)[-1]
        torch.nn.functional.mse_loss(y, torch.full_like(y, data.target)).backward()
        rows.append([param_histogram(p.grad[None], config)[0].numpy()
                     for _, p in net.named_parameters()])
    return np.asarray(rows)


@pytest.mark.parametrize("model_kwargs", [
    {"depth": 8, "width": 12},
    {"depth": 8, "width": 12, "residual": True, "bias": True},
    {"depth": 4, "width": 6, "norm": "layernorm", "residual": True, "activation": "tanh"},
])
def test_batched_histograms_equal_a_loop_over_seeds(model_kwargs):
    model, data = ModelConfig(**model_kwargs), DataConfig(batch_size=3, target=0.5)
    config = HistogramConfig()
    cell = Cell(model, data, "cpu", "float64", SEEDS, histograms=config)
    result = run_chunk(cell, draw_initial_state(model, data, SEEDS))
    expected = _loop_histograms(model, data, config)
    assert result.histograms.shape == expected.shape
    np.testing.assert_array_equal(result.histograms, expected)


def test_counts_sum_to_numel_and_match_the_zero_and_nonfinite_metrics():
    model, data = ModelConfig(depth=12, width=10), DataConfig()
    cell = Cell(model, data, "cpu", "float32", SEEDS, histograms=HistogramConfig())
    result = run_chunk(cell, draw_initial_state(model, data, SEEDS))
    sizes = [model.width * model.width] * (model.depth - 1) + [model.width]
    np.testing.assert_array_equal(result.histograms.sum(axis=2),
                                  np.broadcast_to(sizes, (len(SEEDS), len(sizes))))
    zero = result.histograms[..., HistogramConfig().n_bins + SPECIAL_COUNTS.index("n_zero")]
    np.testing.assert_array_equal(zero, result.values[..., 4])  # grad_zero


def test_without_histograms_nothing_is_counted():
    model, data = ModelConfig(depth=3, width=4), DataConfig()
    result = run_chunk(Cell(model, data, "cpu", "float32", SEEDS),
                       draw_initial_state(model, data, SEEDS))
    assert result.histograms is None


def test_factory_models_count_the_same_with_vmap_and_a_loop():
    # conv_resnet: its gradients have no entries that are zero only by cancellation (see
    # test_factory), so both paths give exactly the same entries.
    cell = Cell(ModelConfig(factory="gradprobe.bench.models.conv_resnet:conv_resnet",
                            width=16, depth=2, residual=True, norm="batchnorm"),
                DataConfig(batch_size=3), "cpu", "float64", (0, 1, 2),
                histograms=HistogramConfig())
    vmapped = _measure_chunk(cell, cell.seeds, use_vmap=True)
    looped = _measure_chunk(cell, cell.seeds, use_vmap=False)
    np.testing.assert_array_equal(vmapped[4], looped[4])
    numel = [spec.numel for spec in vmapped[3]]
    np.testing.assert_array_equal(vmapped[4].sum(axis=2), np.tile(numel, (3, 1)))


def test_training_counts_every_logged_step():
    model, data = ModelConfig(depth=3, width=6), DataConfig()
    train = TrainConfig(steps=4, log_every=2, samples=8)
    cell = Cell(model, data, "cpu", "float32", SEEDS, (train,), HistogramConfig())
    result = train_cell(cell)[0]
    assert result.histograms.shape == (len(SEEDS), 3, 3, HistogramConfig().n_counts)
    sizes = np.array([36, 36, 6])
    np.testing.assert_array_equal(result.histograms.sum(axis=3),
                                  np.broadcast_to(sizes, (len(SEEDS), 3, 3)))


def test_the_memory_estimate_includes_the_histogram_buffers():
    model, data = ModelConfig(depth=4, width=64), DataConfig()
    plain = bytes_per_seed(Cell(model, data, "cpu", "float32", SEEDS))
    counted = bytes_per_seed(Cell(model, data, "cpu", "float32", SEEDS,
                                  histograms=HistogramConfig()))
    # The largest gradient's magnitude, log, bin index and code, and 4 x 5 count vectors.
    assert counted - plain == 64 * 64 * (2 * 4 + 3 * 8) + 4 * 5 * 184 * 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_counts_equal_the_cpu_counts():
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(8, 64, 64, generator=generator, dtype=torch.float64) \
        * torch.logspace(-30, 0, 64, dtype=torch.float64)
    grad[0, 0, :5] = 0.0
    grad[1, 1, 0] = float("nan")
    config = HistogramConfig()
    on_device = log_histograms([grad.cuda()], config)
    np.testing.assert_array_equal(on_device.numpy(), log_histograms([grad], config).numpy())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("step", [0.25, 0.1, 2.0])
def test_the_cpu_kernel_agrees_with_the_torch_path_entry_for_entry(dtype, step):
    # The device path (bucketize + bincount) run on the CPU is the kernel's reference:
    # magnitudes from subnormal to 1e30, exact edges, zeros, NaN and inf, odd bin widths.
    from gradprobe.bench.engine.histograms import _cpu_histogram, _device_histogram, linear_edges

    config = HistogramConfig(low=-42.0, high=6.0, step=step)
    generator = torch.Generator().manual_seed(1)
    exponents = torch.empty(7, 3000, dtype=torch.float64).uniform_(-46, 30, generator=generator)
    grad = (10.0 ** exponents * torch.randn(7, 3000, generator=generator, dtype=torch.float64))
    edges = torch.as_tensor(linear_edges(config, torch.float64))
    grad[0, :len(edges)] = edges  # exactly on the edges
    grad[1, :4] = torch.tensor([0.0, float("nan"), float("inf"), -float("inf")])
    grad = grad.to(dtype)
    np.testing.assert_array_equal(_cpu_histogram(grad, config).numpy(),
                                  _device_histogram(grad, config).numpy())


def _interval_ends(dtype: torch.dtype, k: int) -> torch.Tensor:
    """Every sub-octave interval's smallest, middle and largest magnitude in ``dtype``
    (float32 or float64), one per row ``(3 * 2**(exponent bits + k), 1)``."""
    unsigned, signed, mantissa = ((np.uint32, np.int32, 23) if dtype == torch.float32
                                  else (np.uint64, np.int64, 52))
    keys = np.arange(2 ** (8 * np.dtype(unsigned).itemsize - 1 - mantissa + k), dtype=unsigned)
    span = unsigned(mantissa - k)
    low = keys << span
    high = ((keys + unsigned(1)) << span) - unsigned(1)
    bits = np.concatenate([low, low + (high - low) // unsigned(2), high])
    return torch.from_numpy(bits.view(signed).copy()).view(dtype).reshape(-1, 1)


QUARTER, TENTH, TWO = (HistogramConfig(low=-42.0, high=6.0, step=step)
                       for step in (0.25, 0.1, 2.0))
NARROW = HistogramConfig(low=-1.0, high=1.0, step=0.004)  # narrower than an interval


@pytest.mark.parametrize(("dtype", "config"), [
    *((torch.float32, config) for config in (QUARTER, TENTH, TWO, NARROW)),
    # float64's 2**17 intervals at NARROW would be 400k one-entry rows: its slow path is the
    # one float32 takes, checked above.
    *((torch.float64, config) for config in (QUARTER, TENTH, TWO)),
])
def test_every_table_interval_is_binned_as_the_torch_path_bins_it(dtype, config):
    # Both ends and the middle of every (exponent, top mantissa bits) interval of the CPU
    # kernel's lookup, one entry per row, so the counts compare entry for entry: subnormals,
    # zero, inf and NaN patterns included, with either sign.
    from gradprobe.bench.engine.histograms import _cpu_histogram, _device_histogram

    magnitudes = _interval_ends(dtype, sub_octave_bits(config, dtype))
    for grad in (magnitudes, -magnitudes):
        np.testing.assert_array_equal(_cpu_histogram(grad, config).numpy(),
                                      _device_histogram(grad, config).numpy())


def test_the_default_bins_need_one_comparison_for_every_normal_float32():
    # Quarter decades are wider than an interval (0.3 / 8 decades): no normal magnitude takes
    # the kernel's slow path, and key 0 (zero, the smallest subnormals) says zero.
    base, edge, _, _ = interval_tables(HistogramConfig(), torch.float32)
    k = sub_octave_bits(HistogramConfig(), torch.float32)
    assert (base[2**k:] >= 0).all()
    assert base[0] == HistogramConfig().n_bins + 2
    assert (edge[base < 0] == np.iinfo(np.uint32).max).all()
