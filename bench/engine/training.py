"""Training dynamics: all seeds of a cell trained at once on a synthetic teacher task.

The student of seed ``s`` starts from exactly the engine's initial state for ``s`` (the same
draw, ``init_gain`` and dtype cast as :func:`gradprobe.bench.engine.batched.run_chunk`; the
training records
carry its ``init_fingerprint``). The parameters of all seeds are stacked along a seed
dimension as in the engine and handed to ``torch.optim`` as they are: SGD (with momentum)
and Adam update every element from that element's own gradient and state, and a seed's
loss depends only on its own slice, so each seed follows exactly the trajectory it would
follow alone, up to float rounding of the batched matmuls (tests compare against a
per-seed ``nn.Module`` + ``torch.optim`` loop).

The task (:class:`gradprobe.bench.plan.config.TrainConfig`): seed ``s`` has its own generator,
seeded
from :func:`task_seed` and never from the student's stream, which draws the teacher's
weights and then the ``samples`` training inputs; the targets are the teacher's outputs,
standardised per seed. It depends on the seed, the width, ``out_features``, ``[data]
input`` and the teacher keys only, so every cell of a seed that shares those (plain and
residual, every depth, init scheme or norm) learns the very same task: a paired design.

Step ``t`` is the network after ``t`` optimizer updates: the full-batch MSE loss is
recorded at every step ``0..steps``, per-parameter gradient statistics
(:func:`gradprobe.bench.engine.metrics.reduce_metrics`, ``weight_l2`` of the current weights) at
the steps
of :func:`logged_steps`. Step 0's gradients are those of the training loss at the
initial state, not the at-initialisation records' (constant target, ``[data]`` batch).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
import torch

from gradprobe.bench.engine.batched import DEFAULT_MAX_MEMORY, bytes_per_seed, draw_state
from gradprobe.bench.engine.batched_mlp import forward
from gradprobe.bench.engine.histograms import log_histograms
from gradprobe.bench.engine.metrics import reduce_metrics
from gradprobe.bench.init.device_rng import block_size
from gradprobe.bench.init.initialization import (
    InitialState,
    fingerprint,
    mlp_param_specs,
    scaled_params,
)
from gradprobe.bench.plan.config import DataConfig, ModelConfig, TrainConfig
from gradprobe.bench.plan.devices import DTYPES
from gradprobe.bench.plan.sweep import Cell

TASK_TAG = "gradprobe/train-task/"
SMALL_STEP = 32768  # elements: at::internal::GRAIN_SIZE, see _threads_for


def task_seed(seed: int) -> int:
    """63-bit seed of seed ``s``'s task generator: SHA-256 of ``"gradprobe/train-task/<s>"``.

    A stream of its own, so that the student's initial state stays exactly the engine's and
    the task does not depend on how many values the student drew."""
    digest = hashlib.sha256(f"{TASK_TAG}{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class Task:
    """Training data of ``S`` seeds (float32, CPU)."""

    inputs: torch.Tensor  # (S, samples, width)
    targets: torch.Tensor  # (S, samples, out_features), mean 0 and variance 1 per seed
    fingerprints: list[str]  # (S,) 16 hex digits of SHA-256 of the inputs, then targets


def teacher_layers(model: ModelConfig, train: TrainConfig,
                   generator: torch.Generator) -> list[torch.Tensor]:
    """The teacher's weights ``(out, in)``: N(0, 2/fan_in) for hidden layers (He et al.
    2015: ReLU keeps the signal's scale), N(0, 1/fan_in) for the output layer."""
    dims = [model.width, *[train.teacher_width] * (train.teacher_depth - 1), model.out_features]
    layers = []
    for i, (fan_in, fan_out) in enumerate(pairwise(dims)):
        gain = 2.0 if i < len(dims) - 2 else 1.0
        layers.append(torch.randn(fan_out, fan_in, generator=generator)
                      * math.sqrt(gain / fan_in))
    return layers


def _targets(x: torch.Tensor, layers: Sequence[torch.Tensor]) -> torch.Tensor:
    """Teacher outputs in float64, standardised over all samples and outputs."""
    h = x.double()
    for i, weight in enumerate(layers):
        h = h @ weight.double().T
        if i < len(layers) - 1:
            h = torch.relu(h)
    h = h - h.mean()
    scale = h.square().mean().sqrt()
    return (h / scale if scale > 0 else h).float()


def draw_task(model: ModelConfig, data: DataConfig, train: TrainConfig,
              seeds: Sequence[int]) -> Task:
    """The teacher, inputs and targets of every seed (see the module docstring)."""
    inputs = torch.empty(len(seeds), train.samples, model.width)
    targets = torch.empty(len(seeds), train.samples, model.out_features)
    generator = torch.Generator()
    for row, seed in enumerate(seeds):
        generator.manual_seed(task_seed(seed))
        layers = teacher_layers(model, train, generator)
        if data.input == "uniform":
            inputs[row].uniform_(0.0, 1.0, generator=generator)
        else:
            inputs[row].normal_(0.0, 1.0, generator=generator)
        targets[row] = _targets(inputs[row], layers)
    rows = torch.cat([inputs.flatten(1), targets.flatten(1)], dim=1).numpy()
    return Task(inputs, targets, fingerprint(rows))


def logged_steps(train: TrainConfig) -> np.ndarray:
    """Steps with gradient statistics: ``0, k, 2k, ...`` and always the last step."""
    return np.unique(np.append(np.arange(0, train.steps + 1, train.log_every), train.steps))


def make_optimizer(train: TrainConfig, params: Sequence[torch.Tensor]) -> torch.optim.Optimizer:
    """``torch.optim.SGD`` (with ``momentum``) or ``torch.optim.Adam`` (default betas, eps)."""
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum)
    return torch.optim.Adam(params, lr=train.lr)


@dataclass
class TrainResult:
    """One training setup's trajectories for the seeds of a cell (host arrays)."""

    train: TrainConfig
    seeds: np.ndarray  # (S,) int64
    loss: np.ndarray  # (S, steps + 1) float64, NaN/inf where a seed diverged
    steps: np.ndarray  # (L,) the logged steps
    values: np.ndarray  # (S, L, P, len(METRICS)) float64
    init_fingerprints: np.ndarray  # (S,) str
    task_fingerprints: np.ndarray  # (S,) str
    seconds: float = 0.0
    # (S, L, P, n_counts) int64 log10|g| counts at the logged steps, or None
    histograms: np.ndarray | None = None

    @staticmethod
    def concat(parts: Sequence[TrainResult]) -> TrainResult:
        first = parts[0]
        fields = ("seeds", "loss", "values", "init_fingerprints", "task_fingerprints",
                  *(("histograms",) if first.histograms is not None else ()))
        arrays = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
        return TrainResult(first.train, steps=first.steps,
                           seconds=sum(p.seconds for p in parts), **arrays)


@contextmanager
def _threads_for(elements: int) -> Iterator[None]:
    """One intra-op thread for a training step whose largest activation has fewer than
    ``SMALL_STEP`` elements, restored afterwards.

    PyTorch itself runs elementwise work that small on one thread (its grain size is 32768);
    a step is hundreds of such dependent operations plus a few small matmuls, for which a
    thread hand-off costs more than it saves (measured 6x to 10x slower with 2 threads on a
    2-core machine under load). Larger steps keep torch's setting."""
    before = torch.get_num_threads()
    if elements < SMALL_STEP and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_chunk(cell: Cell, train: TrainConfig, state: InitialState, task: Task) -> TrainResult:
    """Train the seeds of ``state`` on ``task`` for ``train.steps`` full-batch updates."""
    largest = len(state.seeds) * train.samples * max(cell.model.width, cell.model.out_features)
    with _threads_for(largest):
        return _train_chunk(cell, train, state, task)


def _train_chunk(cell: Cell, train: TrainConfig, state: InitialState, task: Task
                 ) -> TrainResult:
    started = time.perf_counter()
    device, dtype = torch.device(cell.device), DTYPES[cell.dtype]
    on_device = replace(state, buffer=state.buffer.to(device))
    params = [p.to(dtype).contiguous().detach().requires_grad_()
              for p in scaled_params(on_device, cell.model.init_gain)]
    inputs, targets = task.inputs.to(device, dtype), task.targets.to(device, dtype)
    optimizer = make_optimizer(train, params)
    logged = logged_steps(train)
    losses = torch.empty(len(state.seeds), train.steps + 1, dtype=torch.float64, device=device)
    stats, counts, n = [], [], len(params)
    for step in range(train.steps + 1):
        log = step in logged
        with torch.enable_grad():
            outputs = forward(cell.model, state.specs, params, inputs)
            loss = (outputs[-1] - targets).square().mean(dim=(1, 2))  # per-seed MSE
            grads = torch.autograd.grad(loss.sum(), [*params, *outputs] if log else params)
        losses[:, step] = loss.detach()
        if log:
            with torch.no_grad():
                stats.append(reduce_metrics(state.specs, params, grads[:n], outputs, grads[n:]))
                if cell.histograms:
                    counts.append(log_histograms(grads[:n], cell.histograms))
        if step < train.steps:
            for param, grad in zip(params, grads[:n], strict=True):
                param.grad = grad
            optimizer.step()
    return TrainResult(train, np.asarray(state.seeds, dtype=np.int64),
                       losses.cpu().numpy(), logged, torch.stack(stats, dim=1).numpy(),
                       np.asarray(state.fingerprints), np.asarray(task.fingerprints),
                       seconds=time.perf_counter() - started,
                       histograms=torch.stack(counts, dim=1).numpy() if counts else None)


def bytes_per_training_seed(cell: Cell, train: TrainConfig) -> int:
    """The engine's per-seed estimate for a batch of ``samples``, plus the optimizer's
    state (up to two moments) and the task's inputs and targets."""
    batch = replace(cell, data=replace(cell.data, batch_size=train.samples))
    size = DTYPES[cell.dtype].itemsize
    n_params = sum(s.numel for s in mlp_param_specs(cell.model))
    n_task = train.samples * (cell.model.width + cell.model.out_features)
    return bytes_per_seed(batch) + n_params * size * 3 + n_task * (4 + size)


def seeds_per_chunk(cell: Cell, train: TrainConfig, max_memory: int) -> int:
    """Seeds per training chunk within the budget (whole generator blocks in device-RNG
    mode, where a block's draw depends on its seeds)."""
    chunk = max(1, max_memory // bytes_per_training_seed(cell, train))
    if cell.model.init_rng == "device":
        block = block_size(cell.model, cell.data)
        chunk = max(block, chunk - chunk % block)
    return chunk


def train_cell(cell: Cell, *, max_memory: int = DEFAULT_MAX_MEMORY) -> list[TrainResult]:
    """Train the MLP ``cell`` under each of its ``trains``, chunk by chunk of seeds (factory
    models train seed by seed, :mod:`gradprobe.bench.engine.factory_training`)."""
    results = []
    for train in cell.trains:
        chunk = seeds_per_chunk(cell, train, max_memory)
        parts = []
        for start in range(0, len(cell.seeds), chunk):
            seeds = cell.seeds[start:start + chunk]
            state = draw_state(cell, seeds)
            parts.append(train_chunk(cell, train, state, draw_task(cell.model, cell.data,
                                                                   train, seeds)))
        results.append(TrainResult.concat(parts))
    return results
