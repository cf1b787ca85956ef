"""The CPU kernel of :mod:`gradprobe.bench.engine.histograms`: one compiled pass that puts
every gradient entry into its log10 |g| slot.

The top bits of an entry's magnitude (its exponent and the first ``k`` mantissa bits) index
a small table (``base``) of the slot of every value in that sub-octave interval, and a second
table (``edge``) holds the bits of the one bin edge inside the interval (all ones, which no
magnitude reaches, when there is none): one integer comparison finishes every entry, with no
data-dependent branch.
Intervals holding two or more edges (subnormals, whose exponent-0 intervals span decades;
bins narrower than an interval) are marked -1 and take the exponent table and edge
comparisons of :func:`_slow_slot`; key 0 says zero, and only its non-zero (subnormal)
entries take that path. Compiled with Numba (cached on disk after
the first use), and loaded only when a CPU gradient is binned, as
:mod:`gradprobe.bench.init.mt19937_kernel` is.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def _slow_slot(a, exponent, first, edges, steps, n_bins):  # pragma: no cover - compiled
    """The slot of one magnitude ``a`` with biased ``exponent`` (see :func:`count_rows`)."""
    if exponent == 0:  # zeros and subnormals: they come in runs (a dead unit's row)
        if a == 0:
            return n_bins + 2
        k = -1
        while k < n_bins and a >= edges[k + 1]:
            k += 1
        return k + 1
    k = first[exponent]
    for _ in range(steps):
        k += a >= edges[k + 1]
    return k + 1


@numba.njit(nogil=True, cache=True)
def count_rows(values, bits, key_shift, magnitude_mask, shift, mask, base, edge, first, edges,
               steps, slots, start, stop):  # pragma: no cover - compiled
    """Count rows ``start:stop`` of ``values`` ``(S, n)`` (``bits``: the same memory as
    unsigned integers, sign bit included) into ``slots`` ``(S, n_bins + 4)``: under, the
    bins, over, zero, NaN/inf (the slot is the edge position plus one).

    ``magnitude = bits & magnitude_mask`` drops the sign; ``key = magnitude >> key_shift``
    keeps exponent and top mantissa bits
    (:func:`gradprobe.bench.engine.histograms.interval_tables`). Neighbouring entries mostly
    land in the same slot; four interleaved partial counts keep each increment from waiting
    for the one before (a store-to-load dependency)."""
    n_bins = slots.shape[1] - 4
    lanes = np.zeros((4, slots.shape[1]), dtype=np.int64)
    for row in range(start, stop):
        r, b = values[row], bits[row]
        lanes[:] = 0
        for j in range(r.shape[0]):
            magnitude = b[j] & magnitude_mask
            key = magnitude >> key_shift
            s = base[key] + (magnitude >= edge[key])
            if s < 0 or (key == 0 and magnitude != 0):  # rare: several edges in the interval
                s = _slow_slot(abs(r[j]), (b[j] >> shift) & mask, first, edges, steps, n_bins)
            lanes[j & 3, s] += 1
        for i in range(slots.shape[1]):
            slots[row, i] = lanes[0, i] + lanes[1, i] + lanes[2, i] + lanes[3, i]
