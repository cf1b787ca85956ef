"""Training for factory models: ``[train]`` with ``[model] factory``.

Seed ``s`` starts from exactly the module its at-initialisation records measured
(:func:`gradprobe.bench.models.factory.build`, same ``init_fingerprint``), cast to the cell's
dtype, with its
own ``torch.optim`` optimiser (:func:`gradprobe.bench.engine.training.make_optimizer`: SGD with
momentum or
Adam), so every seed has its own optimiser state. Seeds run one after another (a loop, not
``vmap``: the models this is for, Hugging Face ones included, often cannot be batched).

The task of seed ``s`` (full batch, ``train.samples`` examples) depends on the seed and the
``[data]`` keys only, never on how many values the model drew, so cells of a seed that
differ in depth or architecture learn the same task (a paired design, as for the MLP):

* with a ``[data] factory``: the factory's batch for ``batch_size = samples``, drawn right
  after ``torch.manual_seed(task_seed(s))`` (:func:`gradprobe.bench.engine.training.task_seed`),
  with
  ``[data] loss`` (its targets or the model's own loss);
* without one: the MLP's teacher task (:func:`gradprobe.bench.engine.training.draw_task`): inputs
  ``(samples, width)`` and the teacher's ``(samples, out_features)`` targets, MSE. The
  module must then take ``(batch, width)`` inputs; for the blog MLP built as a factory
  (``gradprobe.bench.models.mlp:blog_mlp``) this is the MLP engine's training, step for step.

The records are the MLP's (:class:`gradprobe.bench.engine.training.TrainResult`): the loss at every
step
``0..steps``, the metrics of :func:`gradprobe.bench.engine.metrics.reduce_metrics` at the logged
steps, with
``act_rms``/``grad_act_rms`` of the owning modules' outputs as in
:mod:`gradprobe.bench.engine.generic`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from gradprobe.bench.engine.generic import _loop_pass, _reduce, _shapes
from gradprobe.bench.engine.training import (
    TrainResult,
    _threads_for,
    draw_task,
    logged_steps,
    make_optimizer,
    task_seed,
)
from gradprobe.bench.init.initialization import fingerprint
from gradprobe.bench.models import batches
from gradprobe.bench.models.batches import Batch
from gradprobe.bench.models.factory import build, fingerprints, param_specs
from gradprobe.bench.plan.config import TrainConfig
from gradprobe.bench.plan.devices import DTYPES
from gradprobe.bench.plan.sweep import Cell


def draw_factory_task(cell: Cell, train: TrainConfig, module: torch.nn.Module,
                      seed: int) -> Batch:
    """Seed ``seed``'s training batch (float32, CPU; see the module docstring)."""
    if not cell.data.data_factory:
        task = draw_task(cell.model, cell.data, train, [seed])
        return Batch(task.inputs[0], task.targets[0])
    data = replace(cell.data, batch_size=train.samples)
    with torch.random.fork_rng(devices=[]):  # leave the global stream as it was
        torch.manual_seed(task_seed(seed))
        return batches.draw(cell.model, data, module, seed)


def train_seed(cell: Cell, train: TrainConfig, seed: int) -> tuple:
    """One seed: ``(loss (steps + 1,), values (L, P, M), init print, task print, counts
    (L, P, n_counts) or None)``."""
    module, batch = build(cell.model, cell.data, seed)
    init_print = fingerprints([module], [batch])[0]
    task = draw_factory_task(cell, train, module, seed)
    task_print = fingerprint(np.concatenate([t.float().reshape(-1).numpy()
                                             for t in task.tensors()])[None])[0]
    device, dtype = torch.device(cell.device), DTYPES[cell.dtype]
    module, task = module.to(device=device, dtype=dtype), task.to(device, dtype)
    specs, shapes = param_specs(module), _shapes(module, task)
    optimizer = make_optimizer(train, list(module.parameters()))
    losses, stats, counts = [], [], []
    largest = max([torch.Size(shape).numel() for shape in shapes.shapes.values()] +
                  [t.numel() for t in task.tensors()])
    with _threads_for(largest):  # small steps: one thread (measured 12x faster for gpt2)
        _steps(train, module, task, cell, shapes, specs, optimizer, losses, (stats, counts))
    return (np.asarray(losses), np.stack(stats), init_print, task_print,
            np.stack(counts) if counts else None)


def _steps(train, module, task, cell, shapes, specs, optimizer, losses, logs) -> None:
    """``train.steps`` updates, appending each step's loss and each logged step's metrics
    and histogram counts to ``logs = (stats, counts)``."""
    params, logged = list(module.parameters()), set(logged_steps(train).tolist())
    for step in range(train.steps + 1):
        with torch.enable_grad():
            passed = _loop_pass([module], [task], cell.data, shapes)
        losses.append(passed[1][0].item())
        if step in logged:
            values, _, counts = _reduce(specs, *passed, shapes.probed, cell.histograms)
            logs[0].append(values[0])
            if counts is not None:
                logs[1].append(counts[0])
        if step < train.steps:
            for param, grad in zip(params, passed[2], strict=True):
                param.grad = None if grad is None else grad[0]
            optimizer.step()


def train_factory_cell(cell: Cell, seeds: Sequence[int] | None = None) -> list[TrainResult]:
    """Train ``cell`` (a factory cell) under each of its ``trains``, seed by seed."""
    seeds = cell.seeds if seeds is None else seeds
    results = []
    for train in cell.trains:
        started = time.perf_counter()
        per_seed = [train_seed(cell, train, seed) for seed in seeds]
        results.append(TrainResult(
            train, np.asarray(seeds, dtype=np.int64), np.stack([r[0] for r in per_seed]),
            logged_steps(train), np.stack([r[1] for r in per_seed]),
            np.asarray([r[2] for r in per_seed]), np.asarray([r[3] for r in per_seed]),
            seconds=time.perf_counter() - started,
            histograms=np.stack([r[4] for r in per_seed]) if cell.histograms else None))
    return results
