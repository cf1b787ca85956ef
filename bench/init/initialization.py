"""Initial parameters and inputs for many seeds at once, bit-identical to ``torch.nn``.

For seed ``s`` the parameters equal those of the reference module
(:mod:`gradprobe.bench.models.reference`)
built right after ``torch.manual_seed(s)``: ``nn.Linear`` layers created in order, then the
init scheme applied (:mod:`gradprobe.bench.init.init_schemes`), then the
``torch.rand``/``torch.randn``
input. Each seed needs its own CPU generator stream (PyTorch's MT19937), so the torch path
is a loop over seeds that replays those ``torch.nn.init`` calls on one seed's views.

That loop costs ~20 us per seed in call overhead alone, whatever the size. For short
all-uniform streams (the blog's cell draws 420 values) :mod:`gradprobe.bench.init.mt19937`
generates every
seed at once in numpy, bit for bit the same; it is used only after it has been checked
against torch on this machine.

Shapes: a state for ``S`` seeds has ``buffer`` ``(S, parameters + batch_size * width)``;
``params[i]`` is a ``(S, *spec.shape)`` view, ``inputs`` a ``(S, batch_size, width)`` view.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import xxhash

from gradprobe.bench.init import mt19937
from gradprobe.bench.init.init_schemes import replay, uniform_stream
from gradprobe.bench.plan.config import DataConfig, ModelConfig

# From this many values per seed, one seed is enough work for a generation thread.
_THREADED_NUMEL = 20_000
# Below this many draws per seed the seed-vectorised generator is faster than torch's loop
# (measured: ~1.5 us + 9 ns/draw against ~20 us + 6 ns/draw per seed).
_VECTORISED_MAX_DRAWS = 8192
# From this many draws in a call, the compiled generator (Numba, ~1.4 ns a draw against
# torch's ~3 ns) repays loading Numba (~0.3 s) and, on a fresh machine, compiling (~2 s).
# Once something else loaded Numba (histograms, large layers' statistics) it is used for any
# call: 3.4x faster than the seed-vectorised numpy generator at (5, 10), and one call that
# releases the GIL, where numpy's hundreds of short calls, drawn beside the pass, took the
# GIL from the pass's torch calls between every two of theirs (both ran 1.7x slower).
_COMPILED_MIN_DRAWS = 20_000_000
LINEAR_KINDS = ("weight", "bias")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as the reference module's ``named_parameters()`` lists it."""

    name: str  # "layers.0.weight", "norms.0.weight", "alphas.0"
    shape: tuple[int, ...]
    layer: int  # the hidden or output layer it belongs to, 0 = first
    kind: str  # weight | bias (of a Linear), norm_weight | norm_bias, alpha

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def mlp_param_specs(model: ModelConfig) -> list[ParamSpec]:
    """Parameters in ``named_parameters()`` order: Linear layers (weight, bias), then the
    norms of the hidden layers (weight, bias), then the ReZero scales."""
    specs = []
    for layer in range(model.depth):
        out = model.out_features if layer == model.depth - 1 else model.width
        specs.append(ParamSpec(f"layers.{layer}.weight", (out, model.width), layer, "weight"))
        if model.bias:
            specs.append(ParamSpec(f"layers.{layer}.bias", (out,), layer, "bias"))
    if model.norm != "none":
        for layer in range(model.depth - 1):
            specs.append(ParamSpec(f"norms.{layer}.weight", (model.width,), layer,
                                   "norm_weight"))
            specs.append(ParamSpec(f"norms.{layer}.bias", (model.width,), layer, "norm_bias"))
    if model.rezero:
        specs += [ParamSpec(f"alphas.{layer}", (1,), layer, "alpha")
                  for layer in range(model.depth - 1)]
    return specs


def offsets(specs: Sequence[ParamSpec]) -> list[int]:
    """Start of each parameter in a seed's buffer row."""
    starts, position = [], 0
    for spec in specs:
        starts.append(position)
        position += spec.numel
    return starts


@dataclass(frozen=True)
class InitialState:
    """Initial parameters and inputs of ``S`` seeds (float32).

    ``buffer`` row ``i`` is seed ``i``'s whole initial state: every parameter in spec order,
    then the input.
    """

    seeds: tuple[int, ...]
    specs: tuple[ParamSpec, ...]
    buffer: torch.Tensor  # (S, total parameter count + batch_size * width)
    batch_size: int
    fingerprints: list[str]  # (S,) hex digests, see fingerprint()

    @property
    def params(self) -> list[torch.Tensor]:
        """Views into ``buffer``, one ``(S, *shape)`` tensor per spec."""
        return [self.buffer[:, a:a + s.numel].view(-1, *s.shape)
                for s, a in zip(self.specs, offsets(self.specs), strict=True)]

    @property
    def inputs(self) -> torch.Tensor:
        """``(S, batch_size, width)`` view into ``buffer``."""
        start = sum(spec.numel for spec in self.specs)
        return self.buffer[:, start:].view(len(self.seeds), self.batch_size, -1)


def _linear_layout(specs: Sequence[ParamSpec]) -> list[tuple[int, tuple[int, int], int | None]]:
    """Per Linear layer: (weight offset, (out, in), bias offset or None)."""
    starts = dict(zip((s.name for s in specs), offsets(specs), strict=True))
    layout = []
    for spec in specs:
        if spec.kind == "weight":
            bias = starts.get(spec.name.replace(".weight", ".bias"))
            layout.append((starts[spec.name], spec.shape, bias))
    return layout


def _constants(model: ModelConfig, specs: Sequence[ParamSpec], buffer: torch.Tensor,
               total: int, data: DataConfig) -> None:
    """Values that need no random draw: norm scales 1, norm shifts 0, ReZero scales 0,
    Linear biases under a non-default scheme 0, a fixed input."""
    zero_bias = model.init != "torch_default"
    for spec, start in zip(specs, offsets(specs), strict=True):
        if spec.kind in ("norm_weight", "norm_bias", "alpha") or \
                (spec.kind == "bias" and zero_bias):
            buffer[:, start:start + spec.numel] = 1.0 if spec.kind == "norm_weight" else 0.0
    if not isinstance(data.input, str):
        buffer[:, total:] = torch.tensor(data.input, dtype=torch.float32).reshape(-1)


def _fill_with_torch(seeds: Sequence[int], model: ModelConfig, data: DataConfig,
                     specs: Sequence[ParamSpec], rows: torch.Tensor) -> None:
    layout = _linear_layout(specs)
    total = sum(s.numel for s in specs)
    generator = torch.Generator()
    for seed, row in zip(seeds, rows, strict=True):
        generator.manual_seed(seed)
        linears = [(row[w:w + o * i].view(o, i), row[b:b + o] if b is not None else None)
                   for w, (o, i), b in layout]
        replay(model.init, linears, generator)
        if data.input == "uniform":
            row[total:].uniform_(0.0, 1.0, generator=generator)  # torch.rand
        elif data.input == "normal":
            row[total:].normal_(0.0, 1.0, generator=generator)  # torch.randn


def _vectorised_runs(model: ModelConfig, data: DataConfig, specs: Sequence[ParamSpec],
                     n_inputs: int):
    """The whole stream as uniform runs (parameters, then input), or None."""
    runs = uniform_stream(model.init, _linear_layout(specs))
    if runs is None or data.input == "normal":
        return None
    if data.input == "uniform":
        total = sum(s.numel for s in specs)
        end = runs[-1][1]
        runs = [*runs, (end, end + n_inputs, 0.0, 1.0, (total, total + n_inputs))]
    return runs


def merge_runs(runs):
    """Join consecutive runs with equal bounds whose stream positions and destinations are
    both contiguous (or both discarded): one ``uniform_`` call consumes the stream exactly
    as the separate calls would (the CPU kernel draws one value per element, in order)."""
    merged = []
    for a, z, low, high, dest in runs:
        if merged:
            pa, pz, plow, phigh, pdest = merged[-1]
            joins = (pdest is None and dest is None) or (
                pdest is not None and dest is not None and pdest[1] == dest[0])
            if plow == low and phigh == high and pz == a and joins:
                merged[-1] = (pa, z, low, high,
                              None if dest is None else (pdest[0], dest[1]))
                continue
        merged.append((a, z, low, high, dest))
    return merged


def _fill_torch_runs(seeds: Sequence[int], runs, rows: torch.Tensor) -> None:
    """Per seed, one ``uniform_`` call per merged run; discarded runs still consume the
    stream (into a scratch tensor)."""
    generator = torch.Generator()
    scratch = torch.empty(max((z - a for a, z, *_rest, d in runs if d is None), default=0))
    for seed, row in zip(seeds, rows, strict=True):
        generator.manual_seed(seed)
        for a, z, low, high, dest in runs:
            target = row[dest[0]:dest[1]] if dest is not None else scratch[:z - a]
            target.uniform_(low, high, generator=generator)


def _fill_vectorised(seeds: Sequence[int], runs, rows: torch.Tensor) -> None:
    bounds = [(a, z, low, high) for a, z, low, high, _ in runs]
    if all(dest == (a, z) for a, z, _low, _high, dest in runs):
        # Every draw lands where it is drawn (default init, no norms): write in place.
        mt19937.uniform_runs(seeds, bounds, rows.numpy()[:, :runs[-1][1]])
        return
    stream = np.empty((len(seeds), runs[-1][1]), dtype=np.float32)
    mt19937.uniform_runs(seeds, bounds, stream)
    target = rows.numpy()
    for a, z, _low, _high, destination in runs:
        if destination is not None:
            target[:, destination[0]:destination[1]] = stream[:, a:z]


def numba_loaded() -> bool:
    """Whether this process has imported Numba already (its loading cost is spent)."""
    return "numba" in sys.modules


@functools.cache
def compiled_generator():
    """:mod:`gradprobe.bench.init.mt19937_kernel` if Numba loads and the kernel reproduces
    this machine's torch stream (checked once), else None."""
    try:
        from gradprobe.bench.init import mt19937_kernel
    except ImportError:  # no Numba wheel for this platform: torch's loop still works
        return None
    return mt19937_kernel if mt19937_kernel.matches_torch() else None


def _fill_compiled(kernel, seeds: Sequence[int], runs, rows: torch.Tensor) -> None:
    kernel.uniform_runs(seeds, runs, rows.numpy())


@functools.cache
def vectorised_generator_verified() -> bool:
    """Whether :mod:`gradprobe.bench.init.mt19937` reproduces this machine's torch stream (checked
    once)."""
    return mt19937.matches_torch()


def _filler(model: ModelConfig, data: DataConfig, specs: Sequence[ParamSpec], n_inputs: int,
            n_seeds: int):
    """How to fill a block of seed rows: the fastest generator that is exact here."""
    runs = _vectorised_runs(model, data, specs, n_inputs)
    if runs is None:  # normal or orthogonal draws: replay the nn.init calls themselves
        return lambda seeds, rows: _fill_with_torch(seeds, model, data, specs, rows)
    draws = runs[-1][1]
    worth_loading = draws * n_seeds >= _COMPILED_MIN_DRAWS or numba_loaded()
    if worth_loading and mt19937.exact_in_float64(runs) and \
            (kernel := compiled_generator()) is not None:
        return lambda seeds, rows: _fill_compiled(kernel, seeds, runs, rows)
    if draws <= _VECTORISED_MAX_DRAWS and vectorised_generator_verified():
        return lambda seeds, rows: _fill_vectorised(seeds, runs, rows)
    merged = merge_runs(runs)
    return lambda seeds, rows: _fill_torch_runs(seeds, merged, rows)


def _fill_part(fill, seeds, rows) -> list[str]:
    fill(seeds, rows)
    return fingerprint(rows.numpy())


def draw_initial_state(model: ModelConfig, data: DataConfig, seeds: Sequence[int],
                       *, threads: int | None = None, pin: bool = False,
                       reuse: torch.Tensor | None = None,
                       planned_seeds: int | None = None) -> InitialState:
    """Draw parameters, then the input, for every seed, exactly as ``torch.nn`` would.

    ``init_gain`` is not applied here (it scales the draw, see :func:`scaled_params`), so
    cells that differ only in gain share one draw. Seeds are split across ``threads``
    (default: all cores); numpy, torch and the compiled generator release the GIL while they
    work (XXH3 holds it, for ~11 µs a seed at (20, 64)). ``pin``
    allocates the buffer in page-locked memory for fast copies to an accelerator. ``reuse``:
    a float32 buffer of a finished state with at least ``len(seeds)`` rows of this width,
    filled again (its first rows) instead of a fresh one, whose pages the kernel would fault
    in again (~0.1 ms a seed at (20, 64): as long as the generator takes). ``planned_seeds``:
    the seeds of the whole sweep this call is a chunk of (default ``len(seeds)``), which
    decides whether loading the compiled generator pays.
    """
    specs = tuple(mlp_param_specs(model))
    total = sum(spec.numel for spec in specs)
    n_inputs = data.batch_size * model.width
    if reuse is not None and reuse.shape[0] >= len(seeds) and \
            reuse.shape[1] == total + n_inputs and reuse.dtype == torch.float32:
        buffer = reuse[:len(seeds)]
    else:
        buffer = torch.empty(len(seeds), total + n_inputs, dtype=torch.float32,
                             pin_memory=pin)
    _constants(model, specs, buffer, total, data)
    fill = _filler(model, data, specs, n_inputs, max(len(seeds), planned_seeds or 0))
    workers = _thread_count(len(seeds), total, threads)
    bounds = [len(seeds) * i // workers for i in range(workers + 1)]
    if workers == 1:
        prints = _fill_part(fill, seeds, buffer)
    else:
        with ThreadPoolExecutor(workers) as pool:
            jobs = [pool.submit(_fill_part, fill, seeds[a:b], buffer[a:b])
                    for a, b in pairwise(bounds)]
            prints = [p for job in jobs for p in job.result()]
    return InitialState(tuple(seeds), specs, buffer, data.batch_size, prints)


def _thread_count(n_seeds: int, numel_per_seed: int, threads: int | None) -> int:
    if threads is None:
        threads = os.cpu_count() or 1
    # A thread needs enough work to pay for its hand-off: one large seed, or many small ones.
    min_seeds = 1 if numel_per_seed >= _THREADED_NUMEL else 512
    return max(1, min(threads, n_seeds // min_seeds))


def scaled_params(state: InitialState, gain: float) -> list[torch.Tensor]:
    """The parameters with every Linear weight and bias times ``init_gain``
    (``p.mul_(gain)`` on the module's Linear parameters, bit for bit)."""
    if gain == 1.0:
        return state.params
    return [p * gain if spec.kind in LINEAR_KINDS else p
            for spec, p in zip(state.specs, state.params, strict=True)]


# XXH3 (Collet, xxHash) hashes at memory speed: 28 GB/s here, against SHA-256's 1.8 GB/s,
# which was 40% of a seed's cost at depth 20 x width 64. A fingerprint tells initial states
# apart across seeds and runs; nobody forges one, so a cryptographic hash buys nothing. The
# prefix names the scheme: gradprobe 0.x before it wrote 16 hex digits of SHA-256, and
# `compare` must not read that difference as "other initial weights".
FINGERPRINT_PREFIX = "xxh3-"


def fingerprint(rows: np.ndarray) -> list[str]:
    """Per seed, ``"xxh3-"`` and the 16 hex digits of the 64-bit XXH3 of its initial state.

    Takes the float32 buffer rows ``(S, parameters + inputs)`` (parameters before
    ``init_gain``, in spec order, then the input); returns ``S`` strings. Records use it to
    tell whether two runs started seed ``s`` from the same state (same code, same stream).
    """
    return [FINGERPRINT_PREFIX + xxhash.xxh3_64_hexdigest(np.ascontiguousarray(row))
            for row in rows]


def fingerprint_scheme(value: str) -> str:
    """``"xxh3"`` for :func:`fingerprint`'s strings, ``"sha256"`` for the 16 hex digits
    written before it (and by ``init_rng = "device"``), ``"missing"`` for anything else."""
    if isinstance(value, str) and value.startswith(FINGERPRINT_PREFIX):
        return "xxh3"
    return "sha256" if isinstance(value, str) and len(value) == 16 else "missing"
