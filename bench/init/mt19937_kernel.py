"""PyTorch's CPU ``uniform_`` stream for many seeds, compiled: the same bits at generator speed.

The same arithmetic as :mod:`gradprobe.bench.init.mt19937` (MT19937 seeded by
``init_genrand``, as ``torch.manual_seed``; each 32-bit output ``r`` mapped to
``(r & 0xFFFFFF) * 2**-24 * (high - low) + low`` in float32), compiled with Numba so that
each draw is a few machine instructions instead of ~20 numpy passes over a seeds-wide state:

* one seed at a time, its 624-word state in L1; each twist loop reads words at constant
  distances, so LLVM vectorises it across words (AVX2/AVX-512), as it does the tempering
  and float conversion that follow;
* tempering, conversion and the write to the run's destination are fused, so each value is
  written once, where it belongs (draws that a scheme overwrites are never stored);
* the kernel releases the GIL, so the caller splits seeds across threads.

Only runs whose float64 sum is exact go through here (``mt19937.exact_in_float64``: every
``U(-b, b)`` and ``U(0, 1)`` torch.nn draws); one rounding to float32 then equals torch's FMA.
:func:`matches_torch` checks the result against torch before it is trusted, as the numpy
path does. Numba compiles on first use (cached on disk afterwards), so callers load this
module only for cells large enough to gain from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

N, M = 624, 397
_U = np.uint32
_MATRIX_A, _UPPER, _LOWER = _U(0x9908B0DF), _U(0x80000000), _U(0x7FFFFFFF)
_MULT = np.uint32(1812433253)
_LOW32 = np.uint64(0xFFFFFFFF)


@numba.njit(nogil=True, cache=True)
def _seed(state, seed):  # pragma: no cover - compiled
    """init_genrand (Knuth's multiplier) of ``state`` (624,) uint32: torch.manual_seed."""
    state[0] = _U(seed & _LOW32)
    for j in range(1, N):
        prev = state[j - 1]
        state[j] = _U(_MULT * (prev ^ (prev >> _U(30))) + _U(j))


@numba.njit(nogil=True, cache=True)
def _twist(mt):  # pragma: no cover - compiled
    """Regenerate the 624 words in place, in the reference order. Each loop reads words at
    constant distances (+1 and +397 ahead, or 227 back: already regenerated), so LLVM
    vectorises it across words."""
    for k in range(N - M):
        y = (mt[k] & _UPPER) | (mt[k + 1] & _LOWER)
        mt[k] = mt[k + M] ^ (y >> _U(1)) ^ ((_U(0) - (y & _U(1))) & _MATRIX_A)
    for k in range(N - M, N - 1):
        y = (mt[k] & _UPPER) | (mt[k + 1] & _LOWER)
        mt[k] = mt[k - (N - M)] ^ (y >> _U(1)) ^ ((_U(0) - (y & _U(1))) & _MATRIX_A)
    y = (mt[N - 1] & _UPPER) | (mt[0] & _LOWER)
    mt[N - 1] = mt[M - 1] ^ (y >> _U(1)) ^ ((_U(0) - (y & _U(1))) & _MATRIX_A)


@numba.njit(nogil=True, cache=True)
def _convert(mt, lo, hi, scale, low, row, at):  # pragma: no cover - compiled
    """Temper words lo..hi-1 and write them mapped to [low, high) at ``row[at + lo:]``.

    The loop indexes two slices from 0: ``row[at + p]`` with a signed offset made Numba
    wrap negative indices, which LLVM turned into AVX-512 gathers and scatters (3.5x slower
    per draw than these contiguous loads and stores)."""
    words = mt[lo:hi]
    values = row[at + lo:at + hi]
    for p in range(hi - lo):
        y = words[p]
        y ^= y >> _U(11)
        y ^= (y << _U(7)) & _U(0x9D2C5680)
        y ^= (y << _U(15)) & _U(0xEFC60000)
        y ^= y >> _U(18)
        values[p] = np.float32(np.int32(y & _U(0xFFFFFF)) * scale + low)


@numba.njit(nogil=True, cache=True)
def fill_runs(seeds, starts, stops, scales, lows, destinations, out):  # pragma: no cover
    """Per seed ``i``: ``out[i, destinations[r] + p - starts[r]]`` = the stream's value at
    position ``p`` mapped by run ``r`` (``scales[r]`` = (high - low) * 2**-24 and ``lows[r]``
    as float64; ``destinations[r] < 0``: drawn and discarded).

    ``seeds`` (S,) uint64; runs sorted, contiguous from position 0; ``out`` (S, width)
    float32, C-contiguous."""
    total = stops[-1]
    mt = np.empty(N, dtype=np.uint32)
    for i in range(seeds.shape[0]):
        _seed(mt, seeds[i])
        row = out[i]
        run = 0
        for start in range(0, total, N):
            _twist(mt)
            stop = min(start + N, total)
            while stops[run] <= start:
                run += 1
            r = run
            while r < starts.shape[0] and starts[r] < stop:
                if destinations[r] >= 0:
                    _convert(mt, max(starts[r], start) - start, min(stops[r], stop) - start,
                             scales[r], lows[r], row, destinations[r] - starts[r] + start)
                r += 1


def uniform_runs(seeds: Sequence[int], runs, out: np.ndarray) -> None:
    """Fill ``out`` ``(S, width)`` float32 from ``runs`` ``(start, stop, low, high, dest)``
    (``dest`` a ``(buffer start, buffer stop)`` or None), exactly as per seed
    ``manual_seed(seed)`` then one ``uniform_(low, high)`` per run, in order."""
    starts = np.array([r[0] for r in runs], dtype=np.int64)
    stops = np.array([r[1] for r in runs], dtype=np.int64)
    lows = np.array([np.float32(r[2]) for r in runs], dtype=np.float64)
    highs = np.array([np.float32(r[3]) for r in runs], dtype=np.float64)
    # The float32 difference, as torch computes (high - low), then the exact 2**-24 rescaling.
    scales = (highs.astype(np.float32) - lows.astype(np.float32)).astype(np.float64) * 2.0**-24
    dests = np.array([-1 if r[4] is None else r[4][0] for r in runs], dtype=np.int64)
    fill_runs(np.asarray(seeds, dtype=np.uint64), starts, stops, scales, lows, dests, out)


def matches_torch(samples: int = 5000) -> bool:
    """Whether the kernel reproduces torch's ``uniform_`` here (both bounds kinds, streams
    longer than one twist, seeds past 32 bits, a discarded run)."""
    import torch

    seeds = [0, 1, 12345, 2**32 + 7, 2**31 + 3]
    runs = [(0, 1000, -0.125, 0.125, None), (1000, 1000 + samples, -0.3, 0.3, (0, samples)),
            (1000 + samples, 1010 + samples, 0.0, 1.0, (samples, samples + 10))]
    out = np.empty((len(seeds), samples + 10), dtype=np.float32)
    uniform_runs(seeds, runs, out)
    for row, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(seed)
        torch.empty(1000).uniform_(-0.125, 0.125, generator=generator)
        first = torch.empty(samples).uniform_(-0.3, 0.3, generator=generator)
        second = torch.rand(10, generator=generator)
        if not np.array_equal(out[row], torch.cat([first, second]).numpy()):
            return False
    return True
