"""The CPU kernel of :mod:`gradprobe.bench.engine.histograms`: one compiled pass that puts
every gradient entry into its log10 |g| slot.

An entry's exponent bits give its octave; a table (``first``) gives the edge position of the
octave's smallest normal magnitude, and a comparison or two with the linear edges finishes
it (an octave is 0.3 decades wide, a bin 0.25 by default). Zeros and subnormals (exponent 0)
take a branch of their own. Compiled with Numba (cached on disk after the first use), and
loaded only when a CPU gradient is binned, as :mod:`gradprobe.bench.init.mt19937_kernel` is.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True, inline="always")
def _slot(a, exponent, first, edges, steps, n_bins):  # pragma: no cover - compiled
    """The slot of one magnitude ``a`` with biased ``exponent`` (see :func:`count_rows`)."""
    if exponent == 0:  # zeros and subnormals: they come in runs (a dead unit's row)
        if a == 0:
            return n_bins + 2
        k = -1
        while k < n_bins and a >= edges[k + 1]:
            k += 1
        return k + 1
    k = first[exponent]  # two comparisons unrolled: enough for bins of 0.16 decades or more
    k += a >= edges[k + 1]
    k += a >= edges[k + 1]
    for _ in range(steps - 2):
        k += a >= edges[k + 1]
    return k + 1


@numba.njit(nogil=True, cache=True)
def count_rows(values, bits, shift, mask, first, edges, steps, slots, start, stop
               ):  # pragma: no cover - compiled
    """Count rows ``start:stop`` of ``values`` ``(S, n)`` (``bits``: the same memory as
    unsigned integers) into ``slots`` ``(S, n_bins + 4)``: under, the bins, over, zero,
    NaN/inf (the slot is the edge position plus one).

    Neighbouring entries mostly land in the same slot; four interleaved partial counts keep
    each increment from waiting for the one before (a store-to-load dependency)."""
    n_bins = slots.shape[1] - 4
    lanes = np.zeros((4, slots.shape[1]), dtype=np.int64)
    for row in range(start, stop):
        r, b = values[row], bits[row]
        lanes[:] = 0
        for j in range(r.shape[0]):
            lanes[j & 3, _slot(abs(r[j]), (b[j] >> shift) & mask, first, edges, steps,
                               n_bins)] += 1
        for i in range(slots.shape[1]):
            slots[row, i] = lanes[0, i] + lanes[1, i] + lanes[2, i] + lanes[3, i]
