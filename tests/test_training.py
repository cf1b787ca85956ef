"""Seed-batched training equals training each seed alone with nn.Module and torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradprobe.bench.engine.batched import run_chunk
from gradprobe.bench.engine.metrics import METRICS
from gradprobe.bench.engine.training import (
    Task,
    bytes_per_training_seed,
    draw_task,
    logged_steps,
    seeds_per_chunk,
    task_seed,
    train_cell,
    train_chunk,
)
from gradprobe.bench.init.initialization import draw_initial_state, mlp_param_specs
from gradprobe.bench.models.reference import build_reference
from gradprobe.bench.plan.config import DataConfig, ModelConfig, TrainConfig
from gradprobe.bench.plan.sweep import Cell

SEEDS = (0, 1, 5)


def reference_training(model, data, train, seed, task_row, dtype):
    """The literal loop: one module, one optimizer, ``loss.backward()``, ``opt.step()``."""
    net, _ = build_reference(model, data, seed, dtype)
    x, y = task_row
    x, y = x.to(dtype), y.to(dtype)
    if train.optimizer == "sgd":
        optimizer = torch.optim.SGD(net.parameters(), lr=train.lr, momentum=train.momentum)
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=train.lr)
    losses, grads = [], {}
    for step in range(train.steps + 1):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(net(x)[-1], y)
        loss.backward()
        losses.append(loss.item())
        grads[step] = [p.grad.abs().mean().item() for p in net.parameters()]
        if step < train.steps:
            optimizer.step()
    return np.array(losses), grads


@pytest.mark.parametrize("optimizer,lr,momentum", [("sgd", 0.05, 0.0), ("sgd", 0.02, 0.9),
                                                    ("adam", 0.01, 0.0)])
@pytest.mark.parametrize("model_kwargs", [
    {"residual": False},
    {"residual": True, "bias": True},
    {"residual": True, "norm": "layernorm", "rezero": True, "activation": "tanh"},
])
def test_stacked_training_matches_per_seed_modules(optimizer, lr, momentum, model_kwargs):
    # float64, so that the only difference (batched vs single matmuls summing in another
    # order) stays at 1e-15 per operation instead of growing into float32's 1e-7.
    model = ModelConfig(depth=4, width=6, **model_kwargs)
    data = DataConfig()
    train = TrainConfig(steps=6, optimizer=optimizer, lr=lr, momentum=momentum,
                        samples=5, log_every=3)
    cell = Cell(model, data, "cpu", "float64", SEEDS, (train,))
    (result,) = train_cell(cell)
    task = draw_task(model, data, train, SEEDS)
    assert list(result.steps) == [0, 3, 6]
    for row, seed in enumerate(SEEDS):
        row_task = (task.inputs[row], task.targets[row])
        losses, grads = reference_training(model, data, train, seed, row_task, torch.float64)
        np.testing.assert_allclose(result.loss[row], losses, rtol=1e-10)
        assert losses[-1] < losses[0]  # it learns something, so the comparison means something
        for i, step in enumerate(result.steps):
            np.testing.assert_allclose(result.values[row, i, :, 0], grads[step],
                                       rtol=1e-9, atol=1e-300)


def test_float32_training_follows_the_float64_trajectory():
    model, data = ModelConfig(depth=5, width=10, residual=True), DataConfig()
    train = TrainConfig(steps=20, optimizer="adam", lr=0.01)
    runs = {dtype: train_cell(Cell(model, data, "cpu", dtype, SEEDS, (train,)))[0]
            for dtype in ("float32", "float64")}
    np.testing.assert_allclose(runs["float32"].loss, runs["float64"].loss, rtol=2e-4)


def test_step_zero_on_the_measurement_data_is_the_at_init_record():
    # Trained on the records' own input and constant target, step 0 is the engine's
    # measurement exactly: the student starts from the engine's state, same code path.
    model = ModelConfig(residual=True, bias=True, norm="layernorm")
    data = DataConfig(batch_size=3, target=0.5)
    state = draw_initial_state(model, data, SEEDS)
    cell = Cell(model, data, "cpu", "float32", SEEDS)
    at_init = run_chunk(cell, state)
    task = Task(state.inputs.clone(), torch.full((len(SEEDS), 3, 1), 0.5), ["-"] * 3)
    result = train_chunk(cell, TrainConfig(steps=1, samples=3), state, task)
    assert np.array_equal(result.values[:, 0], at_init.values)
    assert np.array_equal(result.loss[:, 0], at_init.loss)
    assert list(result.init_fingerprints) == state.fingerprints


def test_task_is_shared_by_cells_of_a_seed_and_standardised():
    data, train = DataConfig(), TrainConfig(samples=50)
    plain = draw_task(ModelConfig(depth=3, width=8), data, train, (0, 1, 2))
    other = draw_task(ModelConfig(depth=9, width=8, residual=True, init="orthogonal"), data,
                      train, (2, 1, 0))
    assert torch.equal(plain.inputs, other.inputs.flip(0))
    assert torch.equal(plain.targets, other.targets.flip(0))
    assert plain.fingerprints == other.fingerprints[::-1]
    assert len(set(plain.fingerprints)) == 3
    targets = plain.targets.double()
    np.testing.assert_allclose(targets.mean(dim=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(targets.square().mean(dim=(1, 2)), 1.0, atol=1e-5)
    assert (plain.inputs >= 0).all() and (plain.inputs < 1).all()
    normal = draw_task(ModelConfig(width=8), DataConfig(input="normal"), train, (0,))
    assert (normal.inputs < 0).any()


def test_task_stream_is_pinned():
    # The task generator's seed is part of the records' meaning: changing it silently would
    # change every training result. Hand-computed: SHA-256("gradprobe/train-task/0"),
    # first 8 bytes big-endian, shifted right by one bit.
    import hashlib

    digest = hashlib.sha256(b"gradprobe/train-task/0").digest()
    assert task_seed(0) == int.from_bytes(digest[:8], "big") >> 1
    assert task_seed(0) != task_seed(1)
    assert 0 <= task_seed(12345) < 2**63


@pytest.mark.parametrize("steps,every,expected", [(25, 10, [0, 10, 20, 25]),
                                                  (3, 1, [0, 1, 2, 3]),
                                                  (5, 50, [0, 5]), (20, 10, [0, 10, 20])])
def test_logged_steps(steps, every, expected):
    assert list(logged_steps(TrainConfig(steps=steps, log_every=every))) == expected


def test_seeds_train_independently_even_when_some_diverge():
    # A large learning rate makes some residual seeds blow up to inf/NaN; the others must
    # follow exactly the trajectory they follow when trained alone.
    model, data = ModelConfig(depth=8, width=16, residual=True), DataConfig()
    train = TrainConfig(steps=30, lr=0.5, log_every=10)
    seeds = tuple(range(12))
    together = train_cell(Cell(model, data, "cpu", "float64", seeds, (train,)))[0]
    diverged = ~np.isfinite(together.loss[:, -1])
    assert 0 < diverged.sum() < len(seeds), "pick a learning rate where only some diverge"
    for row, seed in enumerate(seeds):
        alone = train_cell(Cell(model, data, "cpu", "float64", (seed,), (train,)))[0]
        np.testing.assert_allclose(together.loss[row], alone.loss[0], rtol=1e-9)
        np.testing.assert_allclose(together.values[row], alone.values[0], rtol=1e-9)


def test_chunks_reproduce_one_chunk():
    model, data = ModelConfig(depth=3, width=8), DataConfig()
    train = TrainConfig(steps=5, optimizer="adam", log_every=2)
    cell = Cell(model, data, "cpu", "float32", tuple(range(8)), (train,))
    whole = train_cell(cell)[0]
    budget = 4 * bytes_per_training_seed(cell, train)
    assert seeds_per_chunk(cell, train, budget) == 4
    chunked = train_cell(cell, max_memory=budget)[0]
    assert np.array_equal(whole.loss, chunked.loss)
    assert np.array_equal(whole.values, chunked.values)


def test_values_hold_the_metrics_of_every_parameter():
    model, data = ModelConfig(depth=3, width=4, bias=True), DataConfig()
    train = TrainConfig(steps=4, log_every=2)
    result = train_cell(Cell(model, data, "cpu", "float32", (0, 1), (train,)))[0]
    specs = mlp_param_specs(model)
    assert result.values.shape == (2, 3, len(specs), len(METRICS))
    weight_l2 = METRICS.index("weight_l2")
    # The weights move: the norm at step 4 differs from the initial one.
    assert not np.array_equal(result.values[:, 0, :, weight_l2], result.values[:, 2, :,
                                                                                weight_l2])
