"""Histograms of log10 |g| per seed and parameter, counted where the gradient lives.

Bins are compared in linear space: an entry is in bin ``i`` when
``10**edges[i] <= |g| < 10**edges[i + 1]``, the linear edges rounded to the gradient's
precision (float32 for half types), so no logarithm is taken and every device agrees on
every entry. A count vector holds the ``n_bins`` bins, then :data:`SPECIAL_COUNTS`: finite
entries at or above ``10**high`` (``n_over``), non-zero entries below ``10**low``
(``n_under``), exact zeros (``n_zero``) and NaN/inf (``n_nonfinite``); it sums to the
parameter's ``numel``. Only the ``(S, P, n_counts)`` counts move to the host.

* On an accelerator, the seeds of a gradient ``(S, *shape)`` are binned at once:
  ``torch.bucketize`` against the linear edges, each seed's codes offset by
  ``seed_row * n_counts``, one ``torch.bincount``.
* On the CPU, where those ~8 elementwise passes cost 3x the whole measurement of the default
  sweep, a Numba kernel makes one pass: an entry's exponent bits give its octave, a table
  gives the first bin that octave can fall in, and a comparison or two with the edges
  finishes it (an octave is 0.3 decades wide). Seeds are split across the torch intra-op
  threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import numpy as np
import torch

from gradprobe.bench.engine.cpu_policy import kernel_pool
from gradprobe.bench.plan.histogram_bins import SPECIAL_COUNTS, HistogramConfig

__all__ = ["SPECIAL_COUNTS", "histogram_bytes_per_seed", "log_histograms", "param_histogram"]

def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


@cache
def linear_edges(config: HistogramConfig, dtype: torch.dtype) -> np.ndarray:
    """``10**edges`` rounded to ``dtype`` (float32 or float64), as a numpy array of it."""
    return (10.0 ** config.edges).astype(np.float32 if dtype == torch.float32 else np.float64)


# IEEE 754 layout per work dtype: (unsigned view, mantissa bits, exponent mask, bias).
_LAYOUT = {torch.float32: (np.uint32, 23, 0xFF, 127), torch.float64: (np.uint64, 52, 0x7FF, 1023)}
LOG10_OCTAVE = math.log10(2.0)


@cache
def _kernel_tables(config: HistogramConfig, dtype: torch.dtype) -> tuple:
    """``(first, edges, steps)`` for the slow path of
    :func:`gradprobe.bench.engine.histogram_kernel.count_rows`.

    ``first[E]``: for biased exponent ``E``, the position of ``2**(E - bias)`` (the smallest
    normal magnitude with that exponent) among the edges: ``k`` with ``edges[k] <= x <
    edges[k + 1]``, -1 below the range, ``n_bins`` above; ``n_bins + 2`` for the all-ones
    exponent (NaN, inf). ``edges``: the linear edges padded with NaN, which no comparison
    passes, so NaN/inf and the overflow position stay where they are. ``steps``: the most
    edges one octave can hold, i.e. the comparisons that finish any entry."""
    _, _, mask, bias = _LAYOUT[dtype]
    edges = linear_edges(config, dtype)
    with np.errstate(over="ignore"):
        smallest = np.ldexp(1.0, np.arange(mask + 1) - bias)
    first = np.searchsorted(edges.astype(np.float64), smallest, side="right") - 1
    first[mask] = config.n_bins + 2
    steps = max(2, math.floor(LOG10_OCTAVE / config.step) + 1)
    padded = np.concatenate([edges, np.full(steps + 4, np.nan, edges.dtype)])
    return first.astype(np.int64), padded, steps


def _reference_slots(magnitudes: np.ndarray, config: HistogramConfig,
                     dtype: torch.dtype) -> np.ndarray:
    """The kernel's slot (under 0, bins 1..n_bins, over, zero, nonfinite) of each
    non-negative magnitude ``(m,)`` in ``dtype``, by binary search on the linear edges."""
    slots = np.searchsorted(linear_edges(config, dtype), magnitudes, side="right")
    slots[magnitudes == 0] = config.n_bins + 2
    slots[~np.isfinite(magnitudes)] = config.n_bins + 3
    return slots


def sub_octave_bits(config: HistogramConfig, dtype: torch.dtype) -> int:
    """``k``, the mantissa bits that split an octave into ``2**k`` table intervals: enough
    that an interval (0.3 / 2**k decades) is at most half a bin, so it holds at most one
    edge; at least 3, at most 6 (a table of ``2**(exponent bits + k)`` entries)."""
    return min(6, max(3, math.ceil(math.log2(2 * LOG10_OCTAVE / config.step))))


@cache
def interval_tables(config: HistogramConfig, dtype: torch.dtype) -> tuple:
    """``(base, edge, key_shift, magnitude_mask)``: the kernel's branch-free lookup.

    The sign-less top bits of a magnitude, its exponent and first ``k`` mantissa bits
    (:func:`sub_octave_bits`), are ``key = (bits & magnitude_mask) >> key_shift``; the
    magnitudes with one key form an interval, monotone in the bits. ``base[key]``: the slot of the
    interval's smallest value when the interval holds at most one edge, else -1 (the
    kernel's slow path); the zero slot for key 0. ``edge[key]``: that edge's bits (entries at
    or above it are one slot up), all ones when the whole interval is in one slot."""
    unsigned, mantissa, mask, _ = _LAYOUT[dtype]
    k = sub_octave_bits(config, dtype)
    keys = np.arange((mask + 1) << k, dtype=unsigned)
    float_type = np.float32 if dtype == torch.float32 else np.float64
    span = unsigned(mantissa - k)
    low = (keys << span).view(float_type)
    high = (((keys + unsigned(1)) << span) - unsigned(1)).view(float_type)
    low_slot = _reference_slots(low, config, dtype)
    high_slot = _reference_slots(high, config, dtype)
    straddles = high_slot == low_slot + 1
    base = np.where((high_slot == low_slot) | straddles, low_slot, -1).astype(np.int16)
    # Key 0 holds zero (most of a deep ReLU net's gradient entries) and the smallest
    # subnormals: it says zero, and the kernel sends a non-zero key-0 entry to the slow path.
    base[0] = config.n_bins + 2
    padded = np.concatenate([linear_edges(config, dtype), [np.nan]]).astype(float_type)
    edge = np.where(straddles, padded[np.minimum(low_slot, len(padded) - 1)], np.nan)
    # Compared as bits: for non-negative floats the unsigned order is the numeric order, and
    # all ones (above any magnitude's bits, sign cleared) never passes, as NaN would not.
    edge_bits = edge.astype(float_type).view(unsigned).copy()
    edge_bits[np.isnan(edge)] = np.iinfo(unsigned).max
    return base, edge_bits, span, unsigned(np.iinfo(unsigned).max >> 1)


def _cpu_histogram(grad: torch.Tensor, config: HistogramConfig) -> torch.Tensor:
    # Numba loads on first use: `gradprobe run` imports neither it nor the scipy it pulls in
    # until a CPU cell is binned (tests/test_architecture.py).
    from gradprobe.bench.engine.histogram_kernel import count_rows

    work = _work_dtype(grad)
    unsigned, shift, mask, _ = _LAYOUT[work]
    values = np.ascontiguousarray(_rows(grad).to(work).numpy())
    slots = np.zeros((grad.shape[0], config.n_counts), dtype=np.int64)
    base, edge, key_shift, magnitude_mask = interval_tables(config, work)
    args = (values, values.view(unsigned), key_shift, magnitude_mask, unsigned(shift),
            unsigned(mask), base, edge, *_kernel_tables(config, work), slots)
    threads = max(1, min(torch.get_num_threads(), grad.shape[0]))
    bounds = np.linspace(0, grad.shape[0], threads + 1).astype(int)
    if threads == 1 or values.size < 2**16:
        count_rows(*args, 0, grad.shape[0])
    else:  # the kernel releases the GIL: seeds split across threads
        list(kernel_pool(threads).map(lambda i: count_rows(*args, bounds[i], bounds[i + 1]),
                                range(threads)))
    n = config.n_bins  # slots (under, bins, over, zero, nonfinite) -> the documented order
    order = [*range(1, n + 1), n + 1, 0, n + 2, n + 3]
    return torch.from_numpy(slots[:, order])


def _rows(grad: torch.Tensor) -> torch.Tensor:
    """``grad`` ``(S, *shape)`` as ``(S, n)``, in memory order: a row's counts do not depend
    on the order of its entries, so a transposed gradient (a Linear weight's, under vmap) is
    read as it lies instead of being copied (the copy cost as much as the binning), and a
    dead unit's zeros come in one run."""
    grad = grad.detach()
    inner = sorted(range(1, grad.dim()), key=lambda dim: -grad.stride(dim))
    return grad.permute(0, *inner).reshape(grad.shape[0], -1)


def _device_histogram(grad: torch.Tensor, config: HistogramConfig) -> torch.Tensor:
    seeds, n_bins = grad.shape[0], config.n_bins
    work = _work_dtype(grad)
    magnitude = grad.reshape(seeds, -1).to(work).abs()
    edges = torch.as_tensor(linear_edges(config, work), device=grad.device)
    # right=True: index i + 1 means edges[i] <= x < edges[i + 1]; 0 below (and 0),
    # n_bins + 1 at or above the top edge (and inf).
    index = torch.bucketize(magnitude, edges, right=True)
    code = torch.where(index == 0, n_bins + 1, index - 1)  # n_bins: over, n_bins + 1: under
    code = torch.where(magnitude == 0, n_bins + 2, code)
    code = torch.where(torch.isfinite(magnitude), code, n_bins + 3)  # NaN and inf
    rows = torch.arange(seeds, device=grad.device).unsqueeze(1) * config.n_counts
    counts = torch.bincount((code + rows).reshape(-1), minlength=seeds * config.n_counts)
    return counts.reshape(seeds, config.n_counts)


def param_histogram(grad: torch.Tensor, config: HistogramConfig) -> torch.Tensor:
    """Counts ``(S, n_counts)`` int64, on ``grad``'s device, of one gradient ``(S, *shape)``."""
    if grad.device.type == "cpu":
        return _cpu_histogram(grad, config)
    return _device_histogram(grad, config)


def log_histograms(grads: Sequence, config: HistogramConfig) -> torch.Tensor:
    """Counts ``(S, P, n_counts)`` int64 on the host for gradients ``(S, *shape_p)`` in spec
    order: one parameter at a time (bounded temporaries), one transfer at the end. A
    gradient held as factors (:class:`gradprobe.bench.engine.outer_stats.OuterGradient`) is
    materialised for its turn only: its products are autograd's, bit for bit (a zero's sign
    aside, which binning ignores)."""
    counts = torch.stack([param_histogram(g if isinstance(g, torch.Tensor) else g.materialise(),
                                          config) for g in grads], dim=1)
    return counts.cpu()


def histogram_bytes_per_seed(largest: int, n_params: int, itemsize: int,
                             config: HistogramConfig | None) -> int:
    """Working memory one seed adds for histograms: for the ``largest`` parameter (they are
    binned one at a time) its magnitude and the bin index and code (int64) of the device
    path (the CPU kernel needs less), and the ``n_params`` count vectors; 0 without."""
    if config is None:
        return 0
    work = 8 if itemsize == 8 else 4
    return largest * (2 * work + 3 * 8) + n_params * config.n_counts * 8
