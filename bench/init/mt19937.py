"""PyTorch's CPU random stream for many seeds at once, bit for bit, in numpy.

``torch.manual_seed(s)`` seeds an MT19937 engine (Matsumoto & Nishimura 1998) with the low 32
bits of ``s``; ``uniform_(a, b)`` on a float32 tensor then maps each 32-bit output ``r`` to
``fma(x, b - a, a)`` with ``x = (r & 0xFFFFFF) * 2**-24``, all in float32 (ATen's
``uniform_real``; its AVX2 build contracts the multiply-add into one FMA).

A Python loop over seeds costs ~20 us per seed in call overhead alone. Here the engine state
is a ``(624, S)`` array, so seeding, twisting and tempering run once for all seeds.
:func:`matches_torch` checks the result against torch on this machine before it is trusted:
a CPU whose torch build does not use FMA, or a future change of torch's stream, makes the
caller fall back to torch's own generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N, M = 624, 397
_U32 = np.uint32
_MATRIX_A, _UPPER, _LOWER = _U32(0x9908B0DF), _U32(0x80000000), _U32(0x7FFFFFFF)


def seeded_states(seeds: Sequence[int]) -> np.ndarray:
    """Knuth's initialisation (init_genrand) of one engine per seed: ``(624, S)`` uint32."""
    low = np.asarray(seeds, dtype=np.uint64) & np.uint64(0xFFFFFFFF)
    state = np.empty((N, len(low)), dtype=_U32)
    state[0] = low.astype(_U32)
    mult = _U32(1812433253)
    for j in range(1, N):
        prev = state[j - 1]
        state[j] = mult * (prev ^ (prev >> _U32(30))) + _U32(j)
    return state


def _mix(upper_from: np.ndarray, lower_from: np.ndarray) -> np.ndarray:
    y = (upper_from & _UPPER) | (lower_from & _LOWER)
    return (y >> _U32(1)) ^ ((y & _U32(1)) * _MATRIX_A)


def twist(state: np.ndarray) -> None:
    """Regenerate all 624 words in place. The sequential recurrence reads words already
    regenerated 227 positions back, so it runs as four slices that respect that order."""
    state[0:227] = state[397:624] ^ _mix(state[0:227], state[1:228])
    state[227:454] = state[0:227] ^ _mix(state[227:454], state[228:455])
    state[454:623] = state[227:396] ^ _mix(state[454:623], state[455:624])
    state[623] = state[396] ^ _mix(state[623], state[0])


def temper(y: np.ndarray) -> np.ndarray:
    y = y ^ (y >> _U32(11))
    y = y ^ ((y << _U32(7)) & _U32(0x9D2C5680))
    y = y ^ ((y << _U32(15)) & _U32(0xEFC60000))
    return y ^ (y >> _U32(18))


def raw_draws(seeds: Sequence[int], count: int) -> np.ndarray:
    """The first ``count`` 32-bit outputs of each seed's engine: ``(S, count)`` uint32."""
    state = seeded_states(seeds)
    out = np.empty((count, len(state[0])), dtype=_U32)
    for start in range(0, count, N):
        twist(state)
        n = min(N, count - start)
        out[start:start + n] = temper(state[:n])
    return np.ascontiguousarray(out.T)


def fma_to_float32(x: np.ndarray, scale: np.float32, offset: np.float32) -> np.ndarray:
    """``fma(x, scale, offset)`` rounded once to float32, for float32 ``x``.

    ``x * scale`` is exact in float64 (24 + 24 bits). The float64 sum ``s`` and its error
    ``e`` (Knuth's TwoSum) hold the exact result; rounding ``s`` to float32 is then correct
    unless ``s`` sits exactly halfway between two float32 values and ``e`` says which side
    the true value is on, in which case ``s`` is nudged one float64 step that way.
    """
    product = x.astype(np.float64) * np.float64(scale)
    off = np.float64(offset)
    s = product + off
    # float64 has 29 more fraction bits than float32: a halfway point has them 1000...0.
    halfway = (s.view(np.uint64) & np.uint64((1 << 29) - 1)) == np.uint64(1 << 28)
    if halfway.any():
        b_virtual = s - product
        e = (product - (s - b_virtual)) + (off - b_virtual)
        fix = halfway & (e != 0)
        s[fix] = np.nextafter(s[fix], np.where(e[fix] > 0, np.inf, -np.inf))
    return s.astype(np.float32)


def _sum_is_exact(scale: np.float32, low: np.float32) -> bool:
    # With u = scale * 2**-24, x * scale = k * u for an integer k < 2**24. If low is an
    # integer multiple q * u with |q| < 2**28, the float64 sum (k + q) * u is exact, so one
    # rounding to float32 equals the FMA's. True for U(-b, b) (q = -2**23) and U(0, 1).
    q = np.float64(low) / (np.float64(scale) * 2.0**-24)
    return bool(q == np.round(q) and abs(q) < 2**28)


def exact_in_float64(runs) -> bool:
    """Whether every run ``(start, stop, low, high, ...)`` maps draws with an exact float64
    multiply-add, so that one rounding to float32 equals torch's FMA (see _sum_is_exact)."""
    return all(_sum_is_exact(np.float32(np.float32(run[3]) - np.float32(run[2])),
                             np.float32(run[2])) for run in runs)


def uniform_float32(raw: np.ndarray, low: float, high: float) -> np.ndarray:
    """``torch.empty(n).uniform_(low, high)`` applied to raw 32-bit draws, as float32."""
    low32, high32 = np.float32(low), np.float32(high)
    scale = np.float32(high32 - low32)
    if not _sum_is_exact(scale, low32):
        x = (raw & _U32(0xFFFFFF)).astype(np.float32) * np.float32(2.0**-24)
        return fma_to_float32(x, scale, low32)
    s = (raw & _U32(0xFFFFFF)).astype(np.float64)
    s *= np.float64(scale) * 2.0**-24  # exact: a power-of-two rescaling of the float32 scale
    s += np.float64(low32)
    return s.astype(np.float32)


Run = tuple[int, int, float, float]  # (start, stop, low, high) positions in each seed's stream


def uniform_runs(seeds: Sequence[int], runs: Sequence[Run], out: np.ndarray,
                 *, block: int = 256) -> None:
    """Fill ``out`` ``(S, total)`` float32 with each seed's first ``total`` draws, position
    ``i`` mapped by the run that covers it.

    Equivalent to, per seed, ``manual_seed(seed)`` then ``t[start:stop].uniform_(low, high)``
    for each run in order. Seeds are processed ``block`` at a time so the working arrays
    stay in cache.
    """
    state = seeded_states(seeds)
    total = out.shape[1]
    for first in range(0, out.shape[0], block):
        part = state[:, first:first + block].copy()
        for start in range(0, total, N):
            twist(part)
            stop = min(start + N, total)
            raw = temper(part[:stop - start])
            for a, z, low, high in runs:
                a, z = max(a, start), min(z, stop)
                if a < z:
                    values = uniform_float32(raw[a - start:z - start], low, high)
                    out[first:first + block, a:z] = values.T


def matches_torch(samples: int = 4096) -> bool:
    """Whether this module reproduces torch's ``uniform_`` on this machine."""
    import torch

    seeds = [0, 1, 12345, 2**32 + 7]
    raw = raw_draws(seeds, samples)
    for row, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(seed)
        expected = torch.empty(samples).uniform_(-0.3, 0.7, generator=generator).numpy()
        if not np.array_equal(uniform_float32(raw[row], -0.3, 0.7), expected):
            return False
    return True
