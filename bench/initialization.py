"""Initial parameters and inputs for many seeds at once, bit-identical to ``torch.nn``.

For seed ``s`` the parameters equal those of ``nn.Linear`` layers created in order right after
``torch.manual_seed(s)``, and the input equals the ``torch.rand``/``torch.randn`` draw that
follows. Each seed needs its own CPU generator stream (PyTorch's MT19937), so generation is a
loop over seeds; within a seed it is one ``uniform_`` call per run of consecutive parameters
that share a bound, which consumes the stream exactly as the per-layer calls would.

That loop costs ~20 us per seed in call overhead, whatever the size. For short streams
(the blog's cell draws 420 values) :mod:`bench.mt19937` generates all seeds at once in numpy,
bit for bit the same; it is used only after it has been checked against torch on this
machine, and torch's own generator is used otherwise.

Shapes: a state for ``S`` seeds holds ``params[i]`` of shape ``(S, *spec.shape)`` and
``inputs`` of shape ``(S, batch_size, width)``, all float32 on the CPU.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from bench import mt19937
from bench.config import DataConfig, ModelConfig

# From this many values per seed, one seed is enough work for a generation thread.
_THREADED_NUMEL = 20_000
# Below this many draws per seed the seed-vectorised generator is faster than torch's loop
# (measured: ~1.5 us + 9 ns/draw against ~20 us + 6 ns/draw per seed).
_VECTORISED_MAX_DRAWS = 8192


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as ``named_parameters()`` lists it, with its ``nn.Linear`` init bound."""

    name: str  # "layers.0.weight"
    shape: tuple[int, ...]
    layer: int
    kind: str  # "weight" | "bias"
    bound: float  # the tensor is drawn from U(-bound, bound)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _kaiming_uniform_bound(fan_in: int) -> float:
    # nn.Linear.reset_parameters: kaiming_uniform_(w, a=sqrt(5)); computed with torch's own
    # calculate_gain so the float is exactly torch's (1/sqrt(fan_in) differs in the last bit).
    gain = torch.nn.init.calculate_gain("leaky_relu", math.sqrt(5))
    return math.sqrt(3.0) * (gain / math.sqrt(fan_in))


def mlp_param_specs(model: ModelConfig) -> list[ParamSpec]:
    """Parameters of the MLP in creation order: per layer weight ``(out, in)``, then bias."""
    specs = []
    for layer in range(model.depth):
        out = model.out_features if layer == model.depth - 1 else model.width
        fan_in = model.width
        specs.append(ParamSpec(f"layers.{layer}.weight", (out, fan_in), layer, "weight",
                               _kaiming_uniform_bound(fan_in)))
        if model.bias:
            specs.append(ParamSpec(f"layers.{layer}.bias", (out,), layer, "bias",
                                   1 / math.sqrt(fan_in)))
    return specs


@dataclass(frozen=True)
class InitialState:
    """Initial parameters and inputs of ``S`` seeds (float32, CPU).

    ``buffer`` row ``i`` is seed ``i``'s whole draw in stream order: every parameter in spec
    order, then the input.
    """

    seeds: tuple[int, ...]
    specs: tuple[ParamSpec, ...]
    buffer: torch.Tensor  # (S, total parameter count + batch_size * width)
    batch_size: int
    fingerprints: list[str]  # (S,) hex digests, see fingerprint()

    @property
    def params(self) -> list[torch.Tensor]:
        """Views into ``buffer``, one ``(S, *shape)`` tensor per spec."""
        views, start = [], 0
        for spec in self.specs:
            views.append(self.buffer[:, start:start + spec.numel].view(-1, *spec.shape))
            start += spec.numel
        return views

    @property
    def inputs(self) -> torch.Tensor:
        """``(S, batch_size, width)`` view into ``buffer``."""
        start = sum(spec.numel for spec in self.specs)
        return self.buffer[:, start:].view(len(self.seeds), self.batch_size, -1)


def _bound_runs(specs: Sequence[ParamSpec]) -> list[tuple[int, int, float]]:
    """``(start, stop, bound)`` slices of the flat vector that share one bound, in order."""
    runs: list[tuple[int, int, float]] = []
    start = 0
    for spec in specs:
        stop = start + spec.numel
        if runs and runs[-1][2] == spec.bound and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], stop, spec.bound)
        else:
            runs.append((start, stop, spec.bound))
        start = stop
    return runs


Stream = list[tuple[int, int, str, float, float]]  # (start, stop, "uniform"|"normal", a, b)


def _stream(specs: Sequence[ParamSpec], data: DataConfig, n_inputs: int) -> Stream:
    """What each seed draws, in order: parameters U(-b, b), then torch.rand/randn input."""
    stream: Stream = [(a, z, "uniform", -b, b) for a, z, b in _bound_runs(specs)]
    total = sum(spec.numel for spec in specs)
    if data.input == "uniform":
        stream.append((total, total + n_inputs, "uniform", 0.0, 1.0))
    elif data.input == "normal":
        stream.append((total, total + n_inputs, "normal", 0.0, 1.0))
    return stream


def _fill_with_torch(seeds: Sequence[int], stream: Stream, rows: torch.Tensor) -> None:
    generator = torch.Generator()
    for seed, row in zip(seeds, rows, strict=True):
        generator.manual_seed(seed)
        for start, stop, kind, a, b in stream:
            if kind == "uniform":
                row[start:stop].uniform_(a, b, generator=generator)
            else:
                row[start:stop].normal_(a, b, generator=generator)


def _fill_vectorised(seeds: Sequence[int], stream: Stream, rows: torch.Tensor) -> None:
    runs = [(start, stop, a, b) for start, stop, _, a, b in stream]
    mt19937.uniform_runs(seeds, runs, rows.numpy()[:, :runs[-1][1]])


@functools.cache
def vectorised_generator_verified() -> bool:
    """Whether :mod:`bench.mt19937` reproduces this machine's torch stream (checked once)."""
    return mt19937.matches_torch()


def _choose_filler(stream: Stream):
    draws = stream[-1][1]
    if (all(kind == "uniform" for _start, _stop, kind, _a, _b in stream)
            and draws <= _VECTORISED_MAX_DRAWS and vectorised_generator_verified()):
        return _fill_vectorised
    return _fill_with_torch


def _fill_part(fill, seeds, stream, rows) -> list[str]:
    fill(seeds, stream, rows)
    return fingerprint(rows.numpy())


def draw_initial_state(model: ModelConfig, data: DataConfig, seeds: Sequence[int],
                       *, threads: int | None = None, pin: bool = False) -> InitialState:
    """Draw parameters, then the input, for every seed, exactly as ``torch.nn`` would.

    ``init_gain`` is not applied here (it scales the draw, see :func:`scaled_params`), so
    cells that differ only in gain share one draw. Seeds are split across ``threads``
    (default: all cores); numpy, torch and hashlib release the GIL while they work. ``pin``
    allocates the buffer in page-locked memory for fast copies to an accelerator.
    """
    specs = tuple(mlp_param_specs(model))
    total = sum(spec.numel for spec in specs)
    n_inputs = data.batch_size * model.width
    buffer = _allocate(len(seeds), total + n_inputs, data, total, pin=pin)
    stream = _stream(specs, data, n_inputs)
    fill = _choose_filler(stream) if stream else (lambda *args: None)
    workers = _thread_count(len(seeds), total, threads)
    bounds = [len(seeds) * i // workers for i in range(workers + 1)]
    parts = [(seeds[a:b], buffer[a:b]) for a, b in itertools.pairwise(bounds)]
    if workers == 1:
        prints = _fill_part(fill, seeds, stream, buffer)
    else:
        with ThreadPoolExecutor(workers) as pool:
            jobs = [pool.submit(_fill_part, fill, part_seeds, stream, rows)
                    for part_seeds, rows in parts]
            prints = [p for job in jobs for p in job.result()]
    return InitialState(tuple(seeds), specs, buffer, data.batch_size, prints)


def _allocate(n_seeds: int, width: int, data: DataConfig, total: int, *,
              pin: bool) -> torch.Tensor:
    # Pinned (page-locked) host memory lets the copy to an accelerator run asynchronously.
    buffer = torch.empty(n_seeds, width, dtype=torch.float32, pin_memory=pin)
    if not isinstance(data.input, str):
        buffer[:, total:] = torch.tensor(data.input, dtype=torch.float32).reshape(-1)
    return buffer


def _thread_count(n_seeds: int, numel_per_seed: int, threads: int | None) -> int:
    if threads is None:
        threads = os.cpu_count() or 1
    # A thread needs enough work to pay for its hand-off: one large seed, or many small ones.
    min_seeds = 1 if numel_per_seed >= _THREADED_NUMEL else 512
    return max(1, min(threads, n_seeds // min_seeds))


def scaled_params(state: InitialState, gain: float) -> list[torch.Tensor]:
    """The parameters times ``init_gain`` (``p.mul_(gain)`` on the nn.Module, bit for bit)."""
    if gain == 1.0:
        return state.params
    return [p * gain for p in state.params]


def fingerprint(rows: np.ndarray) -> list[str]:
    """Per seed, the first 16 hex digits of the SHA-256 of its initial draw.

    Takes the float32 buffer rows ``(S, parameters + inputs)`` (parameters before
    ``init_gain``, in spec order, then the input); returns ``S`` strings. Records use it to
    tell whether two runs started seed ``s`` from the same draw (same code, same stream).
    """
    return [hashlib.sha256(row).hexdigest()[:16] for row in rows]
