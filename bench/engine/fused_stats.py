"""A parameter's gradient statistics in one pass over memory, compiled, for large CPU chunks.

:func:`gradprobe.bench.engine.metrics._param_stats` reduces each gradient with six torch
calls (``abs``, ``amax``, ``mean``, two norms, a zero count), each a pass over a tensor that
at (20, 64) x 500 seeds is 8 MB, out of L2: 0.16 ms of the 0.28 ms a seed the CPU pass cost.
Here one loop per seed row reads the gradient once and keeps every sum in float64, and a
second reads the weight once for its norm (its sum of squares only): 4-6x less CPU time
for the statistics.

Accumulating float32 squares in float64 cannot underflow or overflow (float32 entries are
within 2**-149 .. 2**128), so the norms need none of ``metrics.scaled_norm``'s rescaling, and
the sums are at least as accurate as torch's float32 ones. Rows with a NaN or an infinity
are left to the torch path, which defines what those give. Only float32 CPU gradients of
at least ``metrics.FUSED_MIN_NUMEL`` values *per seed* come here, whatever the chunk: the
choice of path (float64 or float32 sums) must not depend on how seeds are chunked.
"""

from __future__ import annotations

import numba
import numpy as np
import torch


def applies(param: torch.Tensor, grad: torch.Tensor) -> bool:
    """Whether ``param`` and ``grad`` ``(S, *shape)`` are float32 CPU tensors (reduced here)."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (param, grad))


LANES = 16  # one AVX-512 register of float32: the accumulators LLVM keeps in registers
_FLOAT32_MAX = np.float32(3.4028235e38)


@numba.njit(nogil=True, cache=True, fastmath={"reassoc"}, inline="always")
def _accumulate(v, lane, total, squares, peak, zeros, bad):  # pragma: no cover - compiled
    a = np.abs(v)
    total[lane] += np.float64(a)
    squares[lane] += np.float64(a) * np.float64(a)
    peak[lane] = np.maximum(peak[lane], a)
    zeros[lane] += a == np.float32(0)
    bad[lane] += not (a <= _FLOAT32_MAX)  # NaN compares false too


@numba.njit(nogil=True, cache=True, fastmath={"reassoc"})
def _row_stats(flat, stride, n, out):  # pragma: no cover - compiled
    """Per row ``i`` of float32 ``flat[i * stride:i * stride + n]``: sum |v|, sum v^2,
    max |v|, count of v == 0 and count of non-finite v, in ``out`` (S, 5) float64.

    Each row is read once into ``LANES`` independent accumulators (written out, so that LLVM
    keeps them in vector registers; one scalar accumulator per sum did not vectorise), summed
    at the end: float64 sums of float32 terms, whose order changes only the last bits."""
    body = n - n % LANES
    for i in range(out.shape[0]):
        row = flat[i * stride:i * stride + n]  # a 1-D slice: contiguous to Numba
        total, squares = np.zeros(LANES), np.zeros(LANES)
        peak = np.zeros(LANES, np.float32)
        zeros, bad = np.zeros(LANES, np.int64), np.zeros(LANES, np.int64)
        for start in range(0, body, LANES):
            for lane in range(LANES):  # a constant trip count: one vector per accumulator
                _accumulate(row[start + lane], lane, total, squares, peak, zeros, bad)
        for j in range(body, n):
            _accumulate(row[j], 0, total, squares, peak, zeros, bad)
        out[i, 0], out[i, 1], out[i, 2] = total.sum(), squares.sum(), peak.max()
        out[i, 3], out[i, 4] = zeros.sum(), bad.sum()


@numba.njit(nogil=True, cache=True, fastmath={"reassoc"})
def _row_squares(flat, stride, n, out):  # pragma: no cover - compiled
    """Per row ``i`` of float32 ``flat[i * stride:i * stride + n]``: sum v^2 in float64, in
    ``out`` (S,). A parameter's norm needs nothing else; one scalar accumulator, which LLVM
    vectorises, reads it 3x faster than :func:`_row_stats`' five."""
    for i in range(out.shape[0]):
        row = flat[i * stride:i * stride + n]  # a 1-D slice: contiguous to Numba
        squares = 0.0
        for j in range(n):
            squares += np.float64(row[j]) * np.float64(row[j])
        out[i] = squares


def dense_rows(values: torch.Tensor) -> tuple[np.ndarray, int, int] | None:
    """A CPU ``(S, ...)`` tensor whose seed rows each fill a dense block of memory in some
    order (a weight gradient is the transpose of ``bmm``'s output; a parameter is a slice of
    the draw buffer) as ``(flat, stride, n)``: row ``i`` is ``flat[i * stride:][:n]``. None
    if a row is not one block. The statistics here ignore the order within a row."""
    inner = sorted(range(1, values.dim()), key=lambda d: -values.stride(d))
    if not values.permute(0, *inner)[0].is_contiguous():
        return None
    array = values.detach().numpy()
    rows, n = values.shape[0], values[0].numel()
    stride = array.strides[0] // array.itemsize if rows > 1 else n
    span = (rows - 1) * stride + n
    flat = np.lib.stride_tricks.as_strided(array, (span,), (array.itemsize,), writeable=False)
    return flat, stride, n


def row_stats(rows: tuple[np.ndarray, int, int], seeds: int) -> np.ndarray:
    """``(seeds, 5)`` float64 of :func:`_row_stats` for :func:`dense_rows`' ``rows``."""
    out = np.empty((seeds, 5))
    _row_stats(*rows, out)
    return out


def param_stats(param: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor] | None:
    """mean |g|, ||g||_2, max |g|, non-finite count, zero count, ||w||_2, each ``(S,)``
    float64, for :func:`applies` tensors; None when a gradient holds a NaN or an infinity,
    or a seed's entries are not one dense block."""
    grads = dense_rows(grad)
    if grads is None:
        return None
    return stats_columns(param, row_stats(grads, grad.shape[0]), grads[2])


def stats_columns(param: torch.Tensor, stats: np.ndarray, n: int) -> list[torch.Tensor] | None:
    """:func:`param_stats`' columns from a gradient's ``(S, 5)`` :func:`row_stats` over
    ``n`` values a seed; None when a gradient holds a non-finite value or a seed's
    parameter entries are not one dense block."""
    weights = dense_rows(param)
    if weights is None or stats[:, 4].any():
        return None
    squares = np.empty(len(stats))
    _row_squares(*weights, squares)
    weight_l2 = np.sqrt(squares)
    columns = [stats[:, 0] / n, np.sqrt(stats[:, 1]), stats[:, 2], stats[:, 4],
               stats[:, 3], weight_l2]
    return [torch.from_numpy(np.ascontiguousarray(c)) for c in columns]
