"""The generic engine: any ``nn.Module`` from a factory, seeds batched with ``torch.func``.

One module is built per seed (:func:`gradprobe.bench.models.factory.build`); their parameters and
buffers
are stacked along a seed dimension (``torch.func.stack_module_state``) and the forward pass
is ``vmap(functional_call)`` over seeds, the recipe of the ``torch.func`` model-ensembling
tutorial. The per-seed losses are summed and differentiated with ordinary autograd: seeds
share no parameters, so each seed's gradient is its own, as in
:mod:`gradprobe.bench.engine.batched`.

Where ``vmap`` cannot run a model (data-dependent control flow, ``.item()``, in-place
updates of unbatched state ...) it raises, and where it runs but gets the first seed's loss
wrong (checked against the module's own forward in every chunk: Hugging Face GPT-2's masks
are computed wrongly under vmap) :class:`VmapMismatch` is raised; the cell then falls back to
a loop over seeds
with the very same modules, and the result says which path ran and why (the manifest's
``batching``). Both paths give the same records; tests check them against each other and,
on the blog's MLP, against :mod:`gradprobe.bench.engine.batched`.

``act_rms`` and ``grad_act_rms`` of a parameter describe the output of the module that owns
it (the first element of a tuple output): forward hooks add a zero *probe* tensor to each such
output, and ``dL/d(probe)`` is ``dL/d(output)``. They are NaN where the output is not a
floating tensor or the module runs more than once per forward pass (whose output would it be?).
For ``nn.Linear`` owners this is the pre-activation ``W h + b``, not the block output
``h_l`` that the MLP engine records under the same names.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from gradprobe.bench.engine.batched import DEFAULT_MAX_MEMORY, ChunkResult
from gradprobe.bench.engine.histograms import histogram_bytes_per_seed, log_histograms
from gradprobe.bench.engine.metrics import reduce_metrics
from gradprobe.bench.engine.training import _threads_for
from gradprobe.bench.init.initialization import ParamSpec
from gradprobe.bench.models import batches
from gradprobe.bench.models.batches import Batch
from gradprobe.bench.models.batches import stack as stack_batches
from gradprobe.bench.models.factory import build, fingerprints, owner_modules, param_specs
from gradprobe.bench.models.user_code import first_line
from gradprobe.bench.plan.config import DataConfig
from gradprobe.bench.plan.devices import DTYPES
from gradprobe.bench.plan.histogram_bins import HistogramConfig
from gradprobe.bench.plan.sweep import Cell

# What vmap raises for a model it cannot batch; anything else is a real error.
VMAP_ERRORS = (RuntimeError, NotImplementedError)


@dataclass
class FactoryResult:
    """A factory cell's measurement: records as the engine makes them, and how it ran."""

    result: ChunkResult
    specs: list[ParamSpec]
    batching: str  # "vmap" or "loop"
    reason: str = ""  # why vmap was not used (the error's first line)
    notes: list[str] = field(default_factory=list)  # e.g. vmap's slow-fallback warnings


class _Probes:
    """Forward hooks on the parameter-owning modules (see the module docstring)."""

    def __init__(self, owners: Sequence[nn.Module]):
        self.shapes: dict[int, torch.Size] = {}
        self.dtypes: dict[int, torch.dtype] = {}  # probes match outputs (token-id inputs)
        self.probes: Sequence[torch.Tensor] | None = None
        self.slots: dict[int, int] = {}
        self.outputs: dict[int, torch.Tensor] = {}
        self.calls: Counter = Counter()
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(owners)]

    def _hook(self, index: int):
        def hook(_module, _args, output):
            self.calls[index] += 1
            first = output[0] if isinstance(output, (tuple, list)) and output else output
            if not isinstance(first, torch.Tensor) or not first.is_floating_point():
                return None
            if self.probes is None:  # the shape pass
                self.shapes[index] = first.shape
                self.dtypes[index] = first.dtype
                return None
            if index not in self.slots or self.calls[index] > 1:
                return None
            probed = first + self.probes[self.slots[index]]
            self.outputs[index] = probed
            return (probed, *output[1:]) if isinstance(output, tuple) else probed
        return hook

    @property
    def probed(self) -> list[int]:
        """Owners whose output is probed: a floating tensor, produced once per forward."""
        return [i for i in sorted(self.shapes) if self.calls[i] == 1]

    @contextmanager
    def active(self, probes: Sequence[torch.Tensor] | None, slots: dict[int, int]):
        self.probes, self.slots, self.outputs = probes, slots, {}
        self.calls = Counter()
        try:
            yield
        finally:
            self.probes = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@dataclass(frozen=True)
class _Shapes:
    """Probed owner indices, and their output shapes and dtypes, from one forward pass."""

    probed: list[int]
    shapes: dict[int, torch.Size]
    dtypes: dict[int, torch.dtype]

    def zeros(self, index: int, *lead: int, like: torch.Tensor) -> torch.Tensor:
        """A zero probe ``(*lead, *shape)`` for owner ``index`` that requires grad."""
        return torch.zeros((*lead, *self.shapes[index]), dtype=self.dtypes[index],
                           device=like.device).requires_grad_()


def _shapes(module: nn.Module, batch: Batch) -> _Shapes:
    """Probed owners of one seed's forward pass (see :class:`_Shapes`)."""
    module = copy.deepcopy(module)  # keep the real module's buffers (BatchNorm stats) as built
    probes = _Probes(owner_modules(module))
    with torch.no_grad():
        batches.call(module, batch.inputs)
    probes.remove()
    return _Shapes(probes.probed, probes.shapes, probes.dtypes)


def _vmap_pass(modules, inputs: list[Batch], data: DataConfig, shapes: _Shapes):
    """Stacked parameters, per-seed loss, gradients and probed outputs via ``vmap``."""
    params, buffers = stack_module_state(modules)
    base = copy.deepcopy(modules[0]).to("meta")
    hooks = _Probes(owner_modules(base))
    batch, probed = stack_batches(inputs), shapes.probed
    like = next(iter(params.values()))
    probes = [shapes.zeros(i, len(modules), like=like) for i in probed]
    slots = {owner: slot for slot, owner in enumerate(probed)}

    def run(p, b, xs, ys, ps):
        with hooks.active(ps, slots):
            out = batches.call(lambda *a, **k: functional_call(base, (p, b), a, k), xs)
            return batches.loss(out, ys, data), tuple(hooks.outputs[i] for i in probed)

    try:
        in_dims = (0, 0, 0, None if batch.targets is None else 0, 0)
        loss, outputs = vmap(run, in_dims=in_dims)(params, buffers, batch.inputs,
                                                   batch.targets, tuple(probes))
        stacked = list(params.values())
        grads = torch.autograd.grad(loss.sum(), [*stacked, *probes], allow_unused=True)
    finally:
        hooks.remove()
    n = len(stacked)
    return stacked, loss, grads[:n], list(outputs), grads[n:]


def _loop_pass(modules, inputs: list[Batch], data: DataConfig, shapes: _Shapes):
    """The same quantities, one seed at a time, stacked at the end."""
    per_seed, probed = [], shapes.probed
    for module, batch in zip(modules, inputs, strict=True):
        hooks = _Probes(owner_modules(module))
        params = list(module.parameters())
        probes = [shapes.zeros(i, like=params[0]) for i in probed]
        try:
            with hooks.active(probes, {owner: s for s, owner in enumerate(probed)}):
                out = batches.call(module, batch.inputs)
            loss = batches.loss(out, batch.targets, data)
            grads = torch.autograd.grad(loss, [*params, *probes], allow_unused=True)
        finally:
            hooks.remove()
        outputs = [hooks.outputs[i].detach() if i in hooks.outputs else None for i in probed]
        per_seed.append((params, loss.detach(), grads[:len(params)], outputs,
                         grads[len(params):]))
    stack = [torch.stack([p.detach() for p in ps]) for ps in zip(*(s[0] for s in per_seed),
                                                                   strict=True)]
    columns = [list(zip(*(s[k] for s in per_seed), strict=True)) for k in (2, 3, 4)]
    grads, outputs, output_grads = ([_stack(c) for c in column] for column in columns)
    return stack, torch.stack([s[1] for s in per_seed]), grads, outputs, output_grads


def _stack(tensors) -> torch.Tensor | None:
    return None if any(t is None for t in tensors) else torch.stack(tensors)


def _layer_signals(n_layers, probed, outputs, output_grads, like: torch.Tensor):
    """Per owner index, its output and dL/d(output), NaN ``(S, 1)`` where not probed."""
    nan = torch.full((like.shape[0], 1), float("nan"), dtype=like.dtype, device=like.device)
    signals = [(nan, nan)] * n_layers
    for slot, owner in enumerate(probed):
        grad = output_grads[slot]
        if outputs[slot] is None:  # the module did not run for some seed
            continue
        signals[owner] = (outputs[slot].detach(),
                          grad if grad is not None else torch.zeros_like(outputs[slot]))
    return [s[0] for s in signals], [s[1] for s in signals]


def _reduce(specs, params, loss, grads, outputs, output_grads, probed,
            histograms: HistogramConfig | None = None) -> tuple:
    """``(values (S, P, M), loss (S,), counts (S, P, n_counts) or None)`` on the host."""
    grads = [g if g is not None else torch.zeros_like(p)  # an unused parameter: no gradient
             for g, p in zip(grads, params, strict=True)]
    n_layers = max(s.layer for s in specs) + 1
    acts, act_grads = _layer_signals(n_layers, probed, outputs, output_grads, params[0])
    with torch.no_grad():
        values = reduce_metrics(specs, [p.detach() for p in params], grads, acts, act_grads)
        counts = log_histograms(grads, histograms).numpy() if histograms else None
    return values.numpy(), loss.detach().to("cpu", torch.float64).numpy(), counts


def _measure_chunk(cell: Cell, seeds: Sequence[int], use_vmap: bool):
    """Build, stack and measure ``seeds``; returns (values, loss, prints, specs, counts)."""
    built = [build(cell.model, cell.data, seed) for seed in seeds]
    prints = fingerprints([m for m, _ in built], [b for _, b in built])
    device, dtype = torch.device(cell.device), DTYPES[cell.dtype]
    modules = [m.to(device=device, dtype=dtype) for m, _ in built]
    inputs = [b.to(device, dtype) for _, b in built]
    specs = param_specs(modules[0])
    shapes = _shapes(modules[0], inputs[0])
    args = (modules, inputs, cell.data, shapes)
    # One intra-op thread for small passes, as in training
    # (gradprobe.bench.engine.training._threads_for):
    # gpt2 at depth 8, 8 seeds: median 6.1 s vs 9.3 s (3 runs each, loaded 2-core machine).
    largest = max([torch.Size(s).numel() for s in shapes.shapes.values()] +
                  [t.numel() for t in inputs[0].tensors()])
    with torch.enable_grad(), _threads_for(largest * (len(seeds) if use_vmap else 1)):
        if use_vmap:
            values, loss, counts = _reduce(specs, *_vmap_pass(*args), shapes.probed,
                                           cell.histograms)
            _check_vmap(modules[0], inputs[0], cell.data, loss[0], seeds[0])
            return values, loss, prints, specs, counts
        values, loss, counts = _reduce(specs, *_loop_pass(*args), shapes.probed,
                                       cell.histograms)
        return values, loss, prints, specs, counts


class VmapMismatch(RuntimeError):
    """vmap ran, but its loss is not the module's own: the model does something vmap
    silently gets wrong (seen with Hugging Face GPT-2's attention masks)."""


def _check_vmap(module: nn.Module, batch: Batch, data: DataConfig, loss: float,
                seed: int) -> None:
    """Raise :class:`VmapMismatch` unless the vmapped loss of the chunk's first seed equals
    the module's own forward within sqrt(eps) of the dtype (float32: 3.5e-4, float64:
    1.5e-8), a margin far above the rounding of batched vs single matmuls."""
    with torch.no_grad():  # on a copy: a forward may update buffers (BatchNorm statistics)
        own = batches.loss(batches.call(copy.deepcopy(module), batch.inputs), batch.targets,
                           data).item()
    tolerance = float(np.sqrt(torch.finfo(next(module.parameters()).dtype).eps))
    if not np.isclose(loss, own, rtol=tolerance, atol=0) and \
            not (np.isnan(loss) and np.isnan(own)):
        raise VmapMismatch(f"vmap's loss for seed {seed} ({loss:.9g}) is not the module's "
                           f"own ({own:.9g})")


def parameter_bytes_per_seed(sizes: list[int], cell: Cell) -> int:
    """Bytes a seed's parameters of ``sizes`` (numel each) cost: 6 parameter-sized tensors
    (values, gradients, the stacked copies of ``vmap``) of at least 4-byte floats, and the
    histogram buffers. The memory guard sizes a factory model by this alone."""
    itemsize = DTYPES[cell.dtype].itemsize
    return sum(sizes) * 6 * max(itemsize, 4) + histogram_bytes_per_seed(
        max(sizes, default=0), len(sizes), itemsize, cell.histograms)


def seeds_per_chunk(cell: Cell, max_memory: int) -> int:
    """Seeds per chunk: a generous per-seed estimate from one built module (parameters,
    gradients and stacked copies, probed outputs and their gradients, the input)."""
    module, batch = build(cell.model, cell.data, cell.seeds[0])
    shapes = _shapes(module, batch)
    n_acts = sum(torch.Size(shapes.shapes[i]).numel() for i in shapes.probed)
    n_batch = sum(t.numel() for t in batch.tensors())
    per_seed = parameter_bytes_per_seed([p.numel() for p in module.parameters()], cell) + \
        (n_acts * 6 + n_batch * 2) * max(DTYPES[cell.dtype].itemsize, 4)
    return max(1, max_memory // per_seed)


def measure_factory(cell: Cell, *, max_memory: int = DEFAULT_MAX_MEMORY) -> FactoryResult:
    """Measure a factory cell: ``vmap`` if it can, else a loop over seeds (see module doc)."""
    started = time.perf_counter()
    chunk = seeds_per_chunk(cell, max_memory)
    batching, reason, notes, parts = "vmap", "", [], []
    for start in range(0, len(cell.seeds), chunk):
        seeds = cell.seeds[start:start + chunk]
        if batching == "vmap":
            try:
                parts.append(_vmap_chunk(cell, seeds, notes))
                continue
            except VMAP_ERRORS as err:
                batching, reason = "loop", f"{type(err).__name__}: {first_line(err)}"
        parts.append(_measure_chunk(cell, seeds, use_vmap=False))
    values, loss, prints = (np.concatenate([p[k] for p in parts]) for k in (0, 1, 2))
    counts = np.concatenate([p[4] for p in parts]) if cell.histograms else None
    result = ChunkResult(np.asarray(cell.seeds, dtype=np.int64), values, loss, prints,
                         compute_seconds=time.perf_counter() - started, histograms=counts)
    specs = parts[0][3]
    return FactoryResult(result, specs, batching, reason, notes)


def _vmap_chunk(cell: Cell, seeds: Sequence[int], notes: list[str]):
    """:func:`_measure_chunk` with ``vmap``. Its warnings that an operation has no batching
    rule (vmap then loops over seeds inside that operation: correct, slower) go to ``notes``
    for the manifest instead of the terminal; other warnings are shown as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        part = _measure_chunk(cell, seeds, use_vmap=True)
    for w in caught:
        text = str(w.message)
        if "batching rule" in text:
            note = text.split(". Please")[0]
            if note not in notes:
                notes.append(note)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return part
