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


def measured(depth, width, residual, device, dtype, seeds=tuple(range(256))):
    cell = Cell(ModelConfig(depth=depth, width=width, residual=residual), DataConfig(), device,
                dtype, seeds)
    return measure_group([cell])[cell.cell_id]


@pytest.mark.parametrize("depth,width", [(5, 10), (20, 64)])
@pytest.mark.parametrize("residual", [False, True])
def test_cuda_matches_cpu_from_the_same_weights(depth, width, residual):
    torch.backends.cuda.matmul.allow_tf32 = False
    runs = {(device, dtype): measured(depth, width, residual, device, dtype)
            for device in ("cpu", "cuda") for dtype in ("float32", "float64")}
    cpu64 = runs["cpu", "float64"]
    for result in runs.values():
        assert list(result.fingerprints) == list(cpu64.fingerprints)  # the same weights
    truth = cpu64.values[:, :, 0]
    # float64: the same arithmetic in another summation order.
    assert relative_errors(runs["cuda", "float64"].values[:, :, 0], truth).max() < 1e-10
    # float32: CUDA's rounding is no worse than the CPU's, measured against float64. Single
    # records can differ by more than float32's rounding of one product (the blog's plain
    # network at 256 seeds: 3.4e-4, where backpropagation sums cancel), so the bound is
    # the CPU's own error, not a fixed epsilon.
    errors = {device: relative_errors(runs[device, "float32"].values[:, :, 0], truth)
              for device in ("cpu", "cuda")}
    print({device: (float(np.median(e)), float(e.max())) for device, e in errors.items()})
    assert np.median(errors["cuda"]) <= 4 * np.median(errors["cpu"]) + 1e-7
    assert errors["cuda"].max() <= 4 * errors["cpu"].max() + 1e-6


def relative_errors(values: np.ndarray, truth: np.ndarray) -> np.ndarray:
    finite = (values > 0) & (truth > 0)
    return np.abs(values - truth)[finite] / truth[finite]


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


FACTORIES = [
    ("gradprobe.bench.models.conv_resnet:conv_resnet", {"residual": True, "norm": "batchnorm"},
     {}),
    ("gradprobe.bench.models.transformer:transformer", {"residual": True,
                                                        "norm_position": "pre"}, {}),
    ("gradprobe.bench.models.hf:gpt2", {},
     {"loss": "model", "data_factory": "gradprobe.bench.models.hf:causal_tokens"}),
    ("gradprobe.bench.models.hf:bert", {},
     {"loss": "model", "data_factory": "gradprobe.bench.models.hf:masked_tokens"}),
]


@pytest.mark.parametrize("factory,model_kwargs,data_kwargs", FACTORIES)
def test_factory_models_on_cuda_match_the_cpu(factory, model_kwargs, data_kwargs):
    """The generic engine (vmap) on the GPU: same initial state, same float64 gradients."""
    if ".hf:" in factory:
        pytest.importorskip("transformers")
    from gradprobe.bench.engine.generic import measure_factory
    from gradprobe.bench.engine.metrics import METRICS

    model = ModelConfig(factory=factory, width=16, depth=2, **model_kwargs)
    data = DataConfig(batch_size=3, **data_kwargs)
    done = {device: measure_factory(Cell(model, data, device, "float64", (0, 1, 2)))
            for device in ("cpu", "cuda")}
    assert list(done["cpu"].result.fingerprints) == list(done["cuda"].result.fingerprints)
    # Hugging Face's language-model losses upcast the logits with .float(): their loss, and
    # the gradient it sends back, are float32 whatever the model's dtype.
    rtol = 1e-5 if ".hf:" in factory else 1e-9
    np.testing.assert_allclose(done["cuda"].result.loss, done["cpu"].result.loss, rtol=rtol)
    for metric in ("grad_mean_abs", "grad_l2", "grad_max_abs", "weight_l2"):
        m = METRICS.index(metric)
        np.testing.assert_allclose(done["cuda"].result.values[..., m],
                                   done["cpu"].result.values[..., m],
                                   rtol=rtol, atol=1e-14, err_msg=f"{factory} {metric}")


def test_training_on_cuda_follows_the_cpu():
    from gradprobe.bench.engine.training import train_cell
    from gradprobe.bench.plan.config import TrainConfig

    model = ModelConfig(depth=4, width=16, residual=True)
    train = TrainConfig(steps=6, optimizer="adam", lr=0.01, samples=8, log_every=3)
    results = {device: train_cell(Cell(model, DataConfig(), device, "float64", (0, 1, 2),
                                       (train,)))[0] for device in ("cpu", "cuda")}
    assert list(results["cuda"].steps) == list(results["cpu"].steps)
    np.testing.assert_allclose(results["cuda"].loss, results["cpu"].loss, rtol=1e-9)
    np.testing.assert_allclose(results["cuda"].values[..., 0], results["cpu"].values[..., 0],
                               rtol=1e-8, atol=1e-300)


def test_histograms_counted_on_cuda_equal_the_cpu_counts():
    from gradprobe.bench.plan.histogram_bins import HistogramConfig

    model = ModelConfig(depth=8, width=32)  # plain: gradients spread over many decades
    cells = [Cell(model, DataConfig(), device, "float64", tuple(range(64)),
                  histograms=HistogramConfig()) for device in ("cpu", "cuda")]
    a, b = (measure_group([cell])[cell.cell_id] for cell in cells)
    sizes = np.array([32 * 32] * 7 + [32])
    np.testing.assert_array_equal(b.histograms.sum(axis=2), np.tile(sizes, (64, 1)))
    # float64 on both devices: a count may move one bin only where the two sums round a
    # gradient across a bin edge, which the relative tolerance below bounds.
    moved = np.abs(a.histograms - b.histograms).sum() / 2
    assert moved <= 1e-3 * a.histograms.sum()


def test_a_sweep_on_cpu_and_cuda_through_the_cli(tmp_path):
    import subprocess
    import sys

    import pandas as pd

    config = tmp_path / "devices.toml"
    config.write_text('name = "devices"\n[model]\ndepth = 5\nwidth = 10\n[sweep]\nseeds = 32\n'
                      'residual = [false, true]\ndevice = ["cpu", "cuda"]\n')
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "gradprobe", "run", str(config), "--out", str(out)],
                   check=True)
    records = pd.read_parquet(out / "records")
    assert set(records["device"]) == {"cpu", "cuda"}
    from gradprobe.analysis.stats.device_agreement import device_agreement

    agreement = device_agreement(records)
    assert len(agreement) and agreement["within_expected"].all(), agreement
    report = subprocess.run([sys.executable, "-m", "gradprobe", "report", str(out)],
                            check=True, capture_output=True, text=True)
    assert report.returncode == 0
