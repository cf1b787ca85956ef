"""Statistics of rank-one weight gradients without materialising them.

With one input row per seed (``data.batch_size = 1``, the blog's setup) a linear layer's
weight gradient is an outer product: for ``z = W u`` it is ``G[i, j] = delta[i] * u[j]``,
with ``delta = dL/dz``. The engine asks autograd for ``delta`` instead of ``G``: the
backward pass then skips one batched matmul per layer, and the statistics read two vectors
per seed instead of the ``out x in`` gradient (at (50, 256) 13 MB a seed, read at memory
speed: a third of the engine's CPU time).

The statistics are those of the float32 gradient autograd would have produced, not of the
exact product: each ``delta[i] * u[j]`` is one IEEE float32 multiplication, exactly what
the matmul computes for a single row (so underflow to subnormals and to zero, which a deep
plain network's gradients reach, is the same), summed in float64 like
:func:`gradprobe.bench.engine.fused_stats._row_stats` sums a materialised gradient. Only
the order of the sums differs, which moves the last bits of ``grad_mean_abs`` and
``grad_l2``; max, zero and non-finite counts are exact. The work is compute-bound (2.8x
faster with scalar, vectorised accumulators than with fused_stats' per-element ones) and
split over the intra-op threads by seed rows (the kernel releases the GIL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch

from gradprobe.bench.engine import rank_one
from gradprobe.bench.engine.cpu_policy import kernel_pool
from gradprobe.bench.engine.fused_stats import LANES, _accumulate


@dataclass(frozen=True)
class OuterGradient:
    """A weight gradient ``(S, out, in)`` held as its factors: ``delta`` ``(S, 1, out)``
    (``dL/dz``) and ``inputs`` ``(S, 1, in)`` (the layer's input ``u``)."""

    delta: torch.Tensor
    inputs: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.delta.shape[0], self.delta.shape[2], self.inputs.shape[2]))

    def materialise(self) -> torch.Tensor:
        """The gradient ``(S, out, in)`` as autograd computes it, in its memory layout, bit
        for bit but for the sign of zeros (:func:`gradprobe.bench.engine.rank_one.gradient`)."""
        return rank_one.gradient(self.delta, self.inputs)


def applies(weight: torch.Tensor, inputs: torch.Tensor) -> bool:
    """Whether the gradient of ``weight`` ``(S, out, in)`` for layer input ``inputs``
    ``(S, B, in)`` is rank one and lands in the fused float32 CPU statistics."""
    return (inputs.shape[1] == 1 and weight.dim() == 3 and weight.device.type == "cpu"
            and weight.dtype == torch.float32 and inputs.dtype == torch.float32)


@numba.njit(nogil=True, cache=True, fastmath={"reassoc"})
def _row_sums(d, row):  # pragma: no cover - compiled
    """sum |p|, sum p^2 (float64) and the count of p == 0 over ``p = d * row[j]`` (float32):
    scalar accumulators, which LLVM vectorises under ``reassoc``."""
    total, squares, zeros = 0.0, 0.0, 0
    for j in range(row.shape[0]):
        a = np.abs(d * row[j])
        total += np.float64(a)
        squares += np.float64(a) * np.float64(a)
        zeros += a == np.float32(0)
    return total, squares, zeros


@numba.njit(nogil=True, cache=True, fastmath={"reassoc"})
def _careful_seed(delta, row, out):  # pragma: no cover - compiled
    """One seed's statistics with fused_stats' per-element accumulators, which count
    non-finite products (and define what a NaN does to each sum)."""
    n = row.shape[0]
    body = n - n % LANES
    total, squares = np.zeros(LANES), np.zeros(LANES)
    peak = np.zeros(LANES, np.float32)
    zeros, bad = np.zeros(LANES, np.int64), np.zeros(LANES, np.int64)
    for i in range(delta.shape[0]):
        d = delta[i]
        for start in range(0, body, LANES):
            for lane in range(LANES):
                _accumulate(d * row[start + lane], lane, total, squares, peak, zeros, bad)
        for j in range(body, n):
            _accumulate(d * row[j], 0, total, squares, peak, zeros, bad)
    out[0], out[1], out[2] = total.sum(), squares.sum(), peak.max()
    out[3], out[4] = zeros.sum(), bad.sum()


@numba.njit(nogil=True, cache=True, fastmath={"reassoc"})
def _outer_stats(delta, inputs, first, last, out):  # pragma: no cover - compiled
    """For seed rows ``first .. last - 1``: sum |p|, sum p^2, max |p|, count of p == 0 and
    of non-finite p over the float32 products ``p = delta[s, i] * inputs[s, j]``, into
    ``out`` (S, 5) float64.

    max |p| is ``|delta[s, i]| * max_j |inputs[s, j]|`` in float32: rounding is monotonic,
    so it is the largest rounded product, exactly. A seed whose sums come out non-finite
    (a NaN or infinite factor, or an overflowing product) is done again by
    :func:`_careful_seed`, which counts its non-finite products."""
    for s in range(first, last):
        row = inputs[s]
        largest = np.float32(0)
        for j in range(row.shape[0]):
            largest = max(largest, np.abs(row[j]))
        total, squares, zeros, peak = 0.0, 0.0, 0, np.float32(0)
        for i in range(delta.shape[1]):
            t, q, z = _row_sums(delta[s, i], row)
            total, squares, zeros = total + t, squares + q, zeros + z
            peak = max(peak, np.abs(delta[s, i]) * largest)
        if np.isfinite(total) and np.isfinite(squares):
            out[s, 0], out[s, 1], out[s, 2], out[s, 3], out[s, 4] = \
                total, squares, peak, zeros, 0
        else:
            _careful_seed(delta[s], row, out[s])


def row_stats(grads: Sequence[OuterGradient], threads: int) -> list[np.ndarray]:
    """``(S, 5)`` float64 per gradient, columns as :func:`gradprobe.bench.engine.
    fused_stats.row_stats` (sum |g|, sum g^2, max |g|, zeros, non-finite), over ``threads``
    threads each taking a block of seed rows."""
    factors = [(np.ascontiguousarray(g.delta.detach()[:, 0].numpy()),
                np.ascontiguousarray(g.inputs.detach()[:, 0].numpy())) for g in grads]
    outs = [np.empty((g.shape[0], 5)) for g in grads]
    seeds = grads[0].shape[0] if grads else 0
    bounds = np.linspace(0, seeds, max(1, min(threads, seeds)) + 1).astype(int)

    def block(part: int) -> None:
        for (delta, inputs), out in zip(factors, outs, strict=True):
            _outer_stats(delta, inputs, bounds[part], bounds[part + 1], out)

    if len(bounds) == 2:
        block(0)
    else:
        list(kernel_pool(len(bounds) - 1).map(block, range(len(bounds) - 1)))
    return outs
