"""[train] for factory models: one module + optimiser per seed, checked against a literal
loop, the blog MLP against the MLP engine's training, and the task paired across cells."""

from __future__ import annotations

import factory_models
import numpy as np
import pytest
import torch
from support import write_config

from gradprobe.bench.engine.factory_training import train_factory_cell
from gradprobe.bench.engine.metrics import METRICS
from gradprobe.bench.engine.training import task_seed, train_cell
from gradprobe.bench.execute.runner import plan_cells
from gradprobe.bench.plan.config import DataConfig, ModelConfig, TrainConfig
from gradprobe.bench.plan.loader import load_config
from gradprobe.bench.plan.sweep import Cell
from gradprobe.core.errors import ConfigError

GRAD = METRICS.index("grad_mean_abs")
TOKENS = DataConfig(batch_size=2, loss="cross_entropy",
                    data_factory="factory_models:next_tokens")


def literal_training(seed: int, train: TrainConfig, dtype=torch.float64):
    """manual_seed, build, the at-init batch, then the task under task_seed(s); one module,
    one optimizer, zero_grad/backward/step: losses and per-step mean |grad| per parameter."""
    torch.manual_seed(seed)
    net = factory_models.TinyLM(8)
    factory_models.next_tokens(seed=seed, batch_size=2, model=net)  # the at-init draw
    torch.manual_seed(task_seed(seed))
    task = factory_models.next_tokens(seed=seed, batch_size=train.samples, model=net)
    net = net.to(dtype)
    if train.optimizer == "sgd":
        optimizer = torch.optim.SGD(net.parameters(), lr=train.lr, momentum=train.momentum)
    else:
        optimizer = torch.optim.Adam(net.parameters(), lr=train.lr)
    losses, grads = [], []
    for step in range(train.steps + 1):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            net(task.inputs).reshape(-1, factory_models.VOCAB), task.targets.reshape(-1))
        loss.backward()
        losses.append(loss.item())
        grads.append([p.grad.abs().mean().item() for p in net.parameters()])
        if step < train.steps:
            optimizer.step()
    return np.array(losses), np.array(grads)


@pytest.mark.parametrize("optimizer,lr,momentum", [("sgd", 0.5, 0.0), ("sgd", 0.2, 0.9),
                                                    ("adam", 0.05, 0.0)])
def test_training_matches_one_module_and_optimizer_per_seed(optimizer, lr, momentum):
    train = TrainConfig(steps=6, optimizer=optimizer, lr=lr, momentum=momentum, samples=5,
                        log_every=2)
    cell = Cell(ModelConfig(factory="factory_models:tiny_lm", width=8), TOKENS, "cpu",
                "float64", (0, 3), (train,))
    (result,) = train_factory_cell(cell)
    assert list(result.steps) == [0, 2, 4, 6] and result.values.shape[:2] == (2, 4)
    for row, seed in enumerate(cell.seeds):
        losses, grads = literal_training(seed, train)
        np.testing.assert_allclose(result.loss[row], losses, rtol=1e-10)
        assert losses[-1] < losses[0]  # it learns, so the comparison means something
        np.testing.assert_allclose(result.values[row, :, :, GRAD], grads[result.steps],
                                   rtol=1e-9)


def test_blog_mlp_as_a_factory_trains_like_the_mlp_engine():
    train = TrainConfig(steps=5, optimizer="adam", lr=0.01, samples=6, log_every=5)
    model = dict(depth=4, width=6, residual=True, bias=True)
    engine = train_cell(Cell(ModelConfig(**model), DataConfig(), "cpu", "float64", (0, 2),
                             (train,)))[0]
    factory = train_factory_cell(Cell(
        ModelConfig(factory="gradprobe.bench.models.mlp:blog_mlp", **model), DataConfig(), "cpu",
        "float64", (0, 2), (train,)))[0]
    np.testing.assert_allclose(factory.loss, engine.loss, rtol=1e-10)
    assert list(factory.task_fingerprints) == list(engine.task_fingerprints)
    assert list(factory.init_fingerprints) == list(engine.init_fingerprints)
    for metric in ("grad_mean_abs", "grad_l2", "weight_l2"):
        m = METRICS.index(metric)
        np.testing.assert_allclose(factory.values[..., m], engine.values[..., m], rtol=1e-9,
                                   err_msg=metric)


def test_the_task_of_a_seed_is_the_same_in_every_cell():
    train = TrainConfig(steps=1, samples=4)
    results = [train_factory_cell(Cell(ModelConfig(factory="factory_models:tiny_lm",
                                                   width=width), TOKENS, "cpu", "float32",
                                       (0, 1), (train,)))[0] for width in (8, 12)]
    assert list(results[0].task_fingerprints) == list(results[1].task_fingerprints)
    assert results[0].task_fingerprints[0] != results[0].task_fingerprints[1]
    assert results[0].init_fingerprints[0] != results[1].init_fingerprints[0]


@pytest.mark.parametrize("model,lines,message", [
    ("factory_models:tiny_lm",
     '[data]\nfactory = "factory_models:next_tokens"\nloss = "cross_entropy"\n'
     '[train]\nteacher_depth = 3\n',
     "[train] teacher_depth = 3: means nothing with a [data] factory"),
    ("factory_models:tiny_lm", '[data]\nloss = "model"\n[train]\n',
     '[data] loss = "model": [train] without a [data] factory learns the MLP teacher'),
    # conv_resnet takes (3, 8, 8) images at initialisation, not the teacher's (4, 10) rows
    ("gradprobe.bench.models.conv_resnet:conv_resnet", '[train]\nsamples = 4\n',
     "[train] samples = 4: training on the teacher task (inputs (4, 10), targets (4, 1)) fails"),
])
def test_bad_factory_training_is_a_one_line_config_error(tmp_path, model, lines, message):
    text = f'name = "x"\n[model]\nfactory = "{model}"\n{lines}'
    with pytest.raises(ConfigError) as caught:
        plan_cells(load_config(write_config(tmp_path, text)))
    assert message in str(caught.value) and "\n" not in str(caught.value)
