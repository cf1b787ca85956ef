"""[data] factory and [data] loss: token ids, keyword inputs, the model's own loss, each
checked seed by seed against a literal loop, and the one-line errors."""

from __future__ import annotations

import factory_models
import numpy as np
import pytest
import torch
from support import write_config

from gradprobe.bench.engine.generic import _measure_chunk, measure_factory
from gradprobe.bench.engine.metrics import METRICS
from gradprobe.bench.execute.runner import plan_cells
from gradprobe.bench.models.batches import Batch, loss, stack
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.loader import load_config
from gradprobe.bench.plan.sweep import Cell
from gradprobe.core.errors import ConfigError

GRAD = METRICS.index("grad_mean_abs")


def literal(build, draw, loss_of, seed, dtype=torch.float64):
    """``torch.manual_seed(s)``, build, batch, forward, loss, backward: per-param mean |g|."""
    torch.manual_seed(seed)
    net = build()
    batch = draw(net)
    net = net.to(dtype)
    out = net(**batch) if isinstance(batch, dict) else net(batch[0])
    value = loss_of(out, batch)
    value.backward()
    return value.item(), [p.grad.abs().mean().item() for p in net.parameters()]


def test_token_ids_with_cross_entropy_match_a_literal_loop():
    model = ModelConfig(factory="factory_models:tiny_lm", width=8)
    data = DataConfig(batch_size=3, loss="cross_entropy",
                      data_factory="factory_models:next_tokens")
    seeds = (0, 1, 7)
    done = measure_factory(Cell(model, data, "cpu", "float64", seeds))
    for row, seed in enumerate(seeds):
        def draw(net, seed=seed):
            b = factory_models.next_tokens(seed=seed, batch_size=3, model=net)
            return (b.inputs, b.targets)

        value, grads = literal(lambda: factory_models.TinyLM(8), draw,
                               lambda out, b: torch.nn.functional.cross_entropy(
                                   out.reshape(-1, factory_models.VOCAB), b[1].reshape(-1)),
                               seed)
        assert done.result.loss[row] == pytest.approx(value, rel=1e-12)
        np.testing.assert_allclose(done.result.values[row, :, GRAD], grads, rtol=1e-10)


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-5)])
def test_keyword_inputs_and_the_models_own_loss(dtype, rtol):
    model = ModelConfig(factory="factory_models:keyword_lm", width=8)
    data = DataConfig(batch_size=2, loss="model",
                      data_factory="factory_models:keyword_tokens")
    cell = Cell(model, data, "cpu", dtype, (3, 4))
    done = measure_factory(cell)
    for row, seed in enumerate(cell.seeds):
        value, grads = literal(lambda: factory_models.KeywordLM(8),
                               lambda net, s=seed: factory_models.keyword_tokens(
                                   seed=s, batch_size=2),
                               lambda out, b: out.loss, seed, getattr(torch, dtype))
        assert done.result.loss[row] == pytest.approx(value, rel=rtol)
        np.testing.assert_allclose(done.result.values[row, :, GRAD], grads, rtol=rtol)


def test_vmap_and_loop_agree_on_token_batches():
    cell = Cell(ModelConfig(factory="factory_models:tiny_lm", width=8),
                DataConfig(batch_size=3, loss="cross_entropy",
                           data_factory="factory_models:next_tokens"),
                "cpu", "float64", (0, 1, 2))
    vmapped = _measure_chunk(cell, cell.seeds, use_vmap=True)
    looped = _measure_chunk(cell, cell.seeds, use_vmap=False)
    np.testing.assert_allclose(vmapped[1], looped[1], rtol=1e-12)
    assert list(vmapped[2]) == list(looped[2])
    np.testing.assert_allclose(vmapped[0][..., GRAD], looped[0][..., GRAD], rtol=1e-10)


def test_mse_without_targets_is_against_the_constant_target():
    out = torch.tensor([[1.0, 3.0]])
    assert loss(out, None, DataConfig(target=1.0)).item() == pytest.approx(2.0)
    assert loss(out, torch.tensor([[1.0, 1.0]]), DataConfig()).item() == pytest.approx(2.0)


def test_stack_keeps_integer_inputs_and_casts_floats():
    batch = stack([Batch({"ids": torch.tensor([1, 2]), "x": torch.ones(2)}),
                   Batch({"ids": torch.tensor([3, 4]), "x": torch.zeros(2)})])
    cast = batch.to(torch.device("cpu"), torch.float64)
    assert cast.inputs["ids"].dtype == torch.int64 and cast.inputs["x"].dtype == torch.float64
    assert cast.inputs["ids"].shape == (2, 2)


@pytest.mark.parametrize("lines,message", [
    ('[data]\nfactory = "factory_models:next_tokens"\n',
     '[data] factory = "factory_models:next_tokens": needs a [model] factory'),
    ('[data]\nloss = "model"\n', '[data] loss = "model": needs a [model] factory'),
    ('[model]\nfactory = "factory_models:tiny_lm"\n[data]\n'
     'factory = "factory_models:no_batch_size"\n',
     "must accept keyword arguments seed and batch_size (missing: batch_size)"),
    ('[model]\nfactory = "factory_models:tiny_lm"\n[data]\n'
     'factory = "factory_models:next_tokens"\nloss = "mse"\n',
     "[data] loss = \"mse\": loss = \"mse\" needs targets of the output's shape"),
    ('[model]\nfactory = "factory_models:tiny_lm"\n[data]\n'
     'factory = "factory_models:keyword_tokens"\nloss = "cross_entropy"\n',
     "[model] factory = \"factory_models:tiny_lm\": forward on inputs input_ids"),
    ('[model]\nfactory = "factory_models:keyword_lm"\n[data]\n'
     'factory = "factory_models:keyword_tokens"\nloss = "cross_entropy"\n',
     "needs a forward that returns a floating-point tensor (or .logits), not Output"),
])
def test_bad_batches_are_one_line_config_errors(tmp_path, lines, message):
    path = write_config(tmp_path, f'name = "x"\n{lines}')
    with pytest.raises(ConfigError) as caught:
        plan_cells(load_config(path))
    assert message in str(caught.value) and "\n" not in str(caught.value)
