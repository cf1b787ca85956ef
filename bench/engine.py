"""The seed-batched engine: all seeds of a cell in one forward and one backward pass.

For a chunk of seeds the engine stacks the initial parameters along a seed dimension, runs
the batched forward, backpropagates the sum of the per-seed losses (seeds share no
parameters, so each seed's gradient is its own), and reduces every statistic on the device.
Memory is bounded by splitting a cell's seeds into chunks (:func:`seeds_per_chunk`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from bench.devices import DTYPES
from bench.initialization import InitialState, draw_initial_state, scaled_params
from bench.metrics import reduce_metrics
from bench.model import forward, loss_per_seed
from bench.sweep import Cell

DEFAULT_MAX_MEMORY = 2**30  # bytes of working memory per chunk


@dataclass
class ChunkResult:
    """What one chunk of seeds produced, on the host."""

    seeds: np.ndarray  # (S,) int64
    values: np.ndarray  # (S, P, len(METRICS)) float64
    loss: np.ndarray  # (S,) float64
    fingerprints: np.ndarray  # (S,) str, 16 hex digits

    @staticmethod
    def concat(parts: Sequence[ChunkResult]) -> ChunkResult:
        return ChunkResult(*(np.concatenate([getattr(p, f) for p in parts])
                             for f in ("seeds", "values", "loss", "fingerprints")))


def bytes_per_seed(cell: Cell) -> int:
    """Working memory one seed needs: float32 draw, cast parameters and their gradients,
    float32 reduction temporaries, and four activation-sized tensors per layer."""
    m, d = cell.model, cell.data
    size = DTYPES[cell.dtype].itemsize
    n_params = m.depth * m.width * m.width * (1 + m.bias)
    n_acts = d.batch_size * m.width * m.depth
    return n_params * (4 + 2 * size + 8) + n_acts * size * 4 + d.batch_size * m.width * 4


def seeds_per_chunk(cell: Cell, max_memory: int = DEFAULT_MAX_MEMORY) -> int:
    """Seeds per chunk within the memory budget."""
    return max(1, max_memory // bytes_per_seed(cell))


def run_chunk(cell: Cell, state: InitialState) -> ChunkResult:
    """Forward, backward and reductions for the seeds of ``state`` under ``cell``'s settings."""
    device, dtype = torch.device(cell.device), DTYPES[cell.dtype]
    master = [p.to(device) for p in scaled_params(state, cell.model.init_gain)]
    params = [p.to(dtype).detach().requires_grad_() for p in master]
    inputs = state.inputs.to(device, dtype)
    with torch.enable_grad():
        outputs = forward(cell.model, state.specs, params, inputs)
        loss = loss_per_seed(outputs[-1], cell.data.target, cell.data.loss)
        grads = torch.autograd.grad(loss.sum(), [*params, *outputs])
    n = len(params)
    with torch.no_grad():
        values = reduce_metrics(state.specs, params, grads[:n], outputs, grads[n:])
    return ChunkResult(
        seeds=np.asarray(state.seeds, dtype=np.int64),
        values=values.numpy(),
        loss=loss.detach().to("cpu", torch.float64).numpy(),
        fingerprints=np.asarray(state.fingerprints),
    )


def measure_group(cells: Sequence[Cell], *, max_memory: int = DEFAULT_MAX_MEMORY,
                  on_chunk: Callable[[int], None] | None = None) -> dict[str, ChunkResult]:
    """Measure cells that share their initial state (same ``init_key``), chunk by chunk.

    Each chunk of seeds is drawn once and run under every cell, so the cells are paired seed
    by seed. When the cells run on an accelerator, the next chunk is drawn on a host thread
    while the device computes; on the CPU the two would only compete for the same cores.
    Returns ``{cell_id: ChunkResult}`` over all seeds; ``on_chunk(n_seeds)`` is called after
    each (chunk, cell).
    """
    first = cells[0]
    seeds = first.seeds
    chunk = min(seeds_per_chunk(c, max_memory) for c in cells)
    starts = list(range(0, len(seeds), chunk))
    parts: dict[str, list[ChunkResult]] = {c.cell_id: [] for c in cells}

    def draw(start: int) -> InitialState:
        return draw_initial_state(first.model, first.data, seeds[start:start + chunk])

    overlap = any(cell.device != "cpu" for cell in cells)
    with ThreadPoolExecutor(1 if overlap else None) as drawer:
        pending = _Now(draw(starts[0])) if not overlap else drawer.submit(draw, starts[0])
        for i in range(len(starts)):
            state = pending.result()
            if i + 1 < len(starts) and overlap:
                pending = drawer.submit(draw, starts[i + 1])
            for cell in cells:
                parts[cell.cell_id].append(run_chunk(cell, state))
                if on_chunk:
                    on_chunk(len(state.seeds))
            if i + 1 < len(starts) and not overlap:
                pending = _Now(draw(starts[i + 1]))
    return {cell_id: ChunkResult.concat(p) for cell_id, p in parts.items()}


class _Now:
    """A finished result with the ``Future.result()`` interface."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value
