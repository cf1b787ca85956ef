"""The seed-batched engine: all seeds of a cell in one forward and one backward pass.

For a chunk of seeds the engine stacks the initial parameters along a seed dimension, runs
the batched forward, backpropagates the sum of the per-seed losses (seeds share no
parameters, so each seed's gradient is its own), and reduces every statistic on the device.
Memory is bounded by splitting a cell's seeds into chunks (:func:`seeds_per_chunk`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from gradprobe.bench.engine import metrics, rank_one
from gradprobe.bench.engine.batched_mlp import forward, loss_per_seed
from gradprobe.bench.engine.cpu_policy import (
    CpuPolicy,
    current_policy,
    intra_op_threads,
    keep_freed_memory,
)
from gradprobe.bench.engine.histograms import histogram_bytes_per_seed, log_histograms
from gradprobe.bench.engine.metrics import reduce_metrics
from gradprobe.bench.init.device_rng import block_size, draw_on_device
from gradprobe.bench.init.initialization import (
    InitialState,
    draw_initial_state,
    mlp_param_specs,
    scaled_params,
)
from gradprobe.bench.plan.devices import DTYPES
from gradprobe.bench.plan.sweep import Cell

DEFAULT_MAX_MEMORY = 2**30  # bytes of working memory per chunk
# A CPU cell that draws beside its pass is split into about this many chunks, each of at
# least PIPELINE_MIN_SEEDS seeds and PIPELINE_MIN_VALUES drawn values: below that,
# per-chunk costs (a generator's seeding loop, a few hundred tensor operations, and the GIL
# passed between the two threads at each of them) outweigh the first draw's wait. At
# (5, 10) x 10,000 seeds, 3 chunks took 61 ms a call and 8 chunks 80-88 ms
# (docs/performance.md, "sixth pass").
PIPELINE_CHUNKS, PIPELINE_MIN_SEEDS, PIPELINE_MIN_VALUES = 8, 64, 1 << 21
# Host draw buffers kept between calls, at most this many bytes (and half the call's budget).
KEPT_BUFFER_BYTES = 256 << 20


@dataclass
class ChunkResult:
    """What one chunk of seeds produced, on the host, and how long it took."""

    seeds: np.ndarray  # (S,) int64
    values: np.ndarray  # (S, P, len(METRICS)) float64
    loss: np.ndarray  # (S,) float64
    fingerprints: np.ndarray  # (S,) str, 16 hex digits
    compute_seconds: float = 0.0  # forward, backward and reductions of this cell
    init_seconds: float = 0.0  # drawing the initial state (shared by the cell's group)
    threads: int = 0  # torch intra-op threads it ran with (gradprobe.bench.engine.cpu_policy)
    # (S, P, n_counts) int64 log10|g| counts (gradprobe.bench.engine.histograms), or None
    histograms: np.ndarray | None = None

    @staticmethod
    def concat(parts: Sequence[ChunkResult]) -> ChunkResult:
        arrays = (np.concatenate([getattr(p, f) for p in parts])
                  for f in ("seeds", "values", "loss", "fingerprints"))
        histograms = (np.concatenate([p.histograms for p in parts])
                      if parts[0].histograms is not None else None)
        return ChunkResult(*arrays, compute_seconds=sum(p.compute_seconds for p in parts),
                           init_seconds=sum(p.init_seconds for p in parts),
                           threads=max(p.threads for p in parts), histograms=histograms)


def bytes_per_seed(cell: Cell) -> int:
    """Working memory one seed needs: float32 draw, cast parameters and their gradients,
    float32 reduction temporaries, four activation-sized tensors per layer, and the
    histogram buffers (:func:`gradprobe.bench.engine.histograms.histogram_bytes_per_seed`)."""
    m, d = cell.model, cell.data
    size = DTYPES[cell.dtype].itemsize
    n_params = m.depth * m.width * m.width * (1 + m.bias)
    n_acts = d.batch_size * m.width * m.depth
    histograms = histogram_bytes_per_seed(m.width * max(m.width, m.out_features),
                                          m.depth * 5, size, cell.histograms)
    return (n_params * (4 + 2 * size + 8) + n_acts * size * 4 + d.batch_size * m.width * 4
            + histograms)


def draw_bytes_per_seed(cell: Cell) -> int:
    """Bytes of one seed's float32 initial state (parameters and input)."""
    m, d = cell.model, cell.data
    return 4 * (sum(s.numel for s in mlp_param_specs(m)) + d.batch_size * m.width)


def seeds_per_chunk(cell: Cell, max_memory: int = DEFAULT_MAX_MEMORY) -> int:
    """Seeds per chunk within the memory budget (whole generator blocks in device mode)."""
    chunk = max(1, max_memory // bytes_per_seed(cell))
    if cell.model.init_rng == "device":
        block = block_size(cell.model, cell.data)
        chunk = max(block, chunk - chunk % block)
    return chunk


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a timer measures it (nanoGPT's bench.py)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def draw_state(cell: Cell, seeds: Sequence[int], threads: int | None = None,
               reuse: torch.Tensor | None = None) -> InitialState:
    """The initial state of ``seeds`` (a chunk of ``cell.seeds``) as ``cell.model.init_rng``
    says to draw it (``threads``: host threads for the torch-compatible draw, default all
    cores; ``reuse``: the host buffer of a state no longer used, see
    :func:`draw_initial_state`)."""
    if cell.model.init_rng == "device":
        return draw_on_device(cell.model, cell.data, seeds, cell.device)
    return draw_initial_state(cell.model, cell.data, seeds, threads=threads,
                              pin=cell.device.startswith("cuda"), reuse=reuse,
                              planned_seeds=len(cell.seeds))


def run_chunk(cell: Cell, state: InitialState) -> ChunkResult:
    """Forward, backward and reductions for the seeds of ``state`` under ``cell``'s settings."""
    device, dtype = torch.device(cell.device), DTYPES[cell.dtype]
    started = time.perf_counter()
    buffer = state.buffer.to(device, non_blocking=True)
    on_device = InitialState(state.seeds, state.specs, buffer, state.batch_size,
                             state.fingerprints)
    master = scaled_params(on_device, cell.model.init_gain)
    params = [p.to(dtype).detach().requires_grad_() for p in master]
    inputs = on_device.inputs.to(dtype)
    taps: dict = {}
    with torch.enable_grad():
        outputs = forward(cell.model, state.specs, params, inputs, taps)
        loss = loss_per_seed(outputs[-1], cell.data.target, cell.data.loss)
        grads, output_grads = _gradients(cell, state.specs, params, outputs, loss, taps)
    with torch.no_grad():
        values = reduce_metrics(state.specs, params, grads, outputs, output_grads)
        histograms = (log_histograms(grads, cell.histograms).numpy()
                      if cell.histograms else None)
    loss = loss.detach().to("cpu", torch.float64).numpy()
    return ChunkResult(
        seeds=np.asarray(state.seeds, dtype=np.int64),
        values=values.numpy(),
        loss=loss,
        fingerprints=np.asarray(state.fingerprints),
        compute_seconds=time.perf_counter() - started,  # .cpu() above waited for the device
        histograms=histograms,
    )


def _gradients(cell: Cell, specs: Sequence, params: Sequence[torch.Tensor],
               outputs: Sequence[torch.Tensor], loss: torch.Tensor, taps: dict
               ) -> tuple[list, list[torch.Tensor]]:
    """``(grads, output_grads)``: per parameter its gradient ``(S, *shape)``, and per layer
    ``dL/dh_l``. Rank-one weight gradients (one input row a seed) are formed from
    ``delta = dL/dz`` and the layer input, which autograd then skips (its batched matmul):
    large float32 ones stay :class:`OuterGradient` factors, which :func:`reduce_metrics`
    reads as two vectors a seed (histograms materialise one such gradient at a time); the
    others are multiplied out (:mod:`gradprobe.bench.engine.rank_one`)."""
    factored, products = {}, {}
    for i, (spec, param) in enumerate(zip(specs, params, strict=True)):
        if spec.kind != "weight":
            continue
        u, z = taps[spec.layer]
        if not rank_one.applies(param, u):
            continue
        if spec.numel >= metrics.FUSED_MIN_NUMEL:
            from gradprobe.bench.engine import outer_stats  # loads Numba: large layers only

            if outer_stats.applies(param, u):
                factored[i] = (u, z)
                continue
        products[i] = (u, z)
    instead = {**factored, **products}
    wanted = [instead[i][1] if i in instead else p for i, p in enumerate(params)]
    grads = list(torch.autograd.grad(loss.sum(), [*wanted, *outputs]))
    for i, (u, _) in factored.items():
        grads[i] = outer_stats.OuterGradient(grads[i], u.detach())
    for i, (u, _) in products.items():
        grads[i] = rank_one.gradient(grads[i], u.detach())
    return grads[:len(params)], grads[len(params):]


def measure_group(cells: Sequence[Cell], *, max_memory: int = DEFAULT_MAX_MEMORY,
                  on_chunk: Callable[[int], None] | None = None,
                  policy: CpuPolicy | None = None) -> dict[str, ChunkResult]:
    """Measure cells that share their initial state (same ``init_key``), chunk by chunk.

    Each chunk of seeds is drawn once and run under every cell, so the cells are paired seed
    by seed. The next chunk is drawn on a host thread of its own while the current one runs,
    when the cells run on an accelerator or the policy leaves a CPU over for it
    (:meth:`CpuPolicy.draws_beside`; the draw buffers of two chunks then share the budget).
    Returns ``{cell_id: ChunkResult}`` over all seeds; ``on_chunk(n_seeds)`` is called after
    each (chunk, cell). Host threads follow ``policy`` (default :func:`current_policy`).
    """
    policy = policy or current_policy()
    threads = policy.threads_for(cells[0].model.width)
    keep_freed_memory()
    on_host = all(cell.device == "cpu" for cell in cells)
    overlap = cells[0].model.init_rng != "device" and \
        (not on_host or policy.draws_beside(threads))
    with intra_op_threads(threads):
        results = _measure_chunks(cells, max_memory, on_chunk, threads, overlap)
    for result in results.values():
        result.threads = threads
    return results


def _measure_chunks(cells: Sequence[Cell], max_memory: int,
                    on_chunk: Callable[[int], None] | None,
                    threads: int, overlap: bool) -> dict[str, ChunkResult]:
    first = cells[0]
    seeds = first.seeds
    chunk = min(seeds_per_chunk(c, max_memory) for c in cells)
    # On the CPU the chunks are cut as if the next draw ran beside the pass, whether it does
    # or not: that depends on the load, and a seed's float rounding may depend on its chunk
    # (batched matmuls of another batch count), so the chunking must not
    # (tests/test_resume.py: resumed and uninterrupted runs differed by 1.6e-5).
    if first.device == "cpu":  # two chunks' draws live at once in host memory
        chunk = max(1, chunk * bytes_per_seed(first) // (bytes_per_seed(first) +
                                                        draw_bytes_per_seed(first)))
        # The first chunk's draw runs alone: more, smaller chunks shorten that wait.
        least = max(PIPELINE_MIN_SEEDS,
                    -(-PIPELINE_MIN_VALUES // (draw_bytes_per_seed(first) // 4)))
        chunk = min(chunk, max(least, -(-len(seeds) // PIPELINE_CHUNKS)))
        chunk = -(-len(seeds) // -(-len(seeds) // chunk))  # even chunks: no short last one
    starts = list(range(0, len(seeds), chunk))
    parts: dict[str, list[ChunkResult]] = {c.cell_id: [] for c in cells}

    def draw(start: int, spare: torch.Tensor | None) -> tuple[InitialState, float]:
        started = time.perf_counter()
        state = draw_state(first, seeds[start:start + chunk], threads, reuse=spare)
        synchronize(torch.device(first.device if first.model.init_rng == "device" else "cpu"))
        return state, time.perf_counter() - started

    # A host buffer no cell uses any more: on the CPU, kept from the last call (an
    # accelerator's draws go to page-locked buffers, which the CUDA host allocator caches).
    on_cpu = first.device == "cpu"
    columns = draw_bytes_per_seed(first) // 4
    if not on_cpu:
        _kept.clear()  # kept CPU buffers would sit beside this call's budget
    spare = _kept.take(chunk, columns) if on_cpu else None
    drawn_into: list[torch.Tensor] = []
    with ThreadPoolExecutor(1 if overlap else None) as drawer:
        pending = drawer.submit(draw, starts[0], spare) if overlap else \
            _Now(draw(starts[0], spare))
        spare = _kept.take(chunk, columns) if overlap and on_cpu else None
        for i in range(len(starts)):
            state, init_seconds = pending.result()
            drawn_into.append(state.buffer)
            if i + 1 < len(starts) and overlap:
                pending = drawer.submit(draw, starts[i + 1], spare)
            for cell in cells:
                result = run_chunk(cell, state)
                result.init_seconds = init_seconds / len(cells)
                parts[cell.cell_id].append(result)
                if on_chunk:
                    on_chunk(len(state.seeds))
            # run_chunk's last device-to-host copy waited for the copy out of this buffer
            spare = state.buffer if state.buffer.device.type == "cpu" else None
            if i + 1 < len(starts) and not overlap:
                pending = _Now(draw(starts[i + 1], spare))
    if on_cpu:
        _kept.keep(drawn_into, min(KEPT_BUFFER_BYTES, max_memory // 2))
    return {cell_id: ChunkResult.concat(p) for cell_id, p in parts.items()}


class _KeptBuffers:
    """Host draw buffers kept from one call of :func:`measure_group` for the next.

    A fresh buffer's pages are faulted in by the kernel as the generator first writes them.
    On a virtual machine a page the guest has not touched lately costs ~1 µs: the first two
    draws of every call at (20, 64) took 90-115 ms where a reused buffer took 6-10 ms, and the
    first three or four of each call's rounds ran 1.8x slower than the rest. Repeated calls
    (a benchmark, a notebook) reuse them; a sweep frees them after each group's measurement
    (:func:`release_draw_buffers`, in :mod:`gradprobe.bench.execute.tasks`), so training and
    the next group have their whole budget. Only buffers of the shape asked for are handed
    out; a CPU call of another shape, or an accelerator call, frees them first."""

    def __init__(self) -> None:
        self._buffers: list[torch.Tensor] = []
        self._lock = threading.Lock()  # a threaded Dask worker may run two groups at once

    def take(self, rows: int, columns: int) -> torch.Tensor | None:
        """A kept float32 buffer of ``(rows, columns)``, or None (then none is kept any more).
        Exactly that shape: a larger one would hold more memory than this call's budget
        allowed for."""
        with self._lock:
            for i, buffer in enumerate(self._buffers):
                if buffer.shape == (rows, columns):
                    return self._buffers.pop(i)
            self._buffers.clear()
            return None

    def keep(self, buffers: Sequence[torch.Tensor | None], limit: int) -> None:
        """Keep the distinct buffers among ``buffers`` (CPU draws; views stand for their
        whole buffer) while their bytes stay within ``limit``."""
        kept, used, seen = [], 0, set()
        for buffer in buffers:
            if buffer is None:
                continue
            if buffer._base is not None:  # a chunk's first rows of a whole buffer
                buffer = buffer._base
            size = buffer.numel() * buffer.element_size()
            # Chunks recycle two buffers: each must be kept once, or two draws at once
            # would share one (the next chunk's draw runs beside the current chunk's pass).
            if buffer.data_ptr() not in seen and used + size <= limit:
                kept.append(buffer)
                used += size
                seen.add(buffer.data_ptr())
        with self._lock:
            self._buffers = kept

    def clear(self) -> None:
        """Free every kept buffer."""
        with self._lock:
            self._buffers = []


_kept = _KeptBuffers()


def release_draw_buffers() -> None:
    """Free the host draw buffers kept for the next call of :func:`measure_group`. A sweep
    does so after each group's measurement, so that nothing runs beside them and a notebook
    holds none after a run."""
    _kept.clear()


class _Now:
    """A finished result with the ``Future.result()`` interface."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value
