"""The seed-vectorised MT19937 reproduces torch's CPU uniform_ bit for bit."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from gradprobe.bench.init import mt19937


def torch_uniform(seed: int, n: int, low: float, high: float) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    return torch.empty(n).uniform_(low, high, generator=generator).numpy()


@pytest.mark.parametrize("low,high", [(-0.316, 0.316), (0.0, 1.0), (-0.3, 0.7), (2.5, 2.75)])
def test_uniform_matches_torch(low, high):
    seeds = [0, 1, 2, 99, 2**31 + 3, 2**40 + 11]
    raw = mt19937.raw_draws(seeds, 1500)  # crosses two twists of the 624-word state
    for row, seed in enumerate(seeds):
        expected = torch_uniform(seed, 1500, low, high)
        assert np.array_equal(mt19937.uniform_float32(raw[row], low, high), expected)


def test_runs_continue_one_stream():
    runs = [(0, 700, -0.5, 0.5), (700, 710, 0.0, 1.0)]
    out = np.empty((3, 710), dtype=np.float32)
    mt19937.uniform_runs([4, 5, 6], runs, out, block=2)
    for row, seed in enumerate([4, 5, 6]):
        generator = torch.Generator().manual_seed(seed)
        first = torch.empty(700).uniform_(-0.5, 0.5, generator=generator)
        second = torch.rand(10, generator=generator)
        assert np.array_equal(out[row], torch.cat([first, second]).numpy())


def exact_fma_float32(x: np.float32, scale: np.float32, offset: np.float32) -> np.float32:
    exact = Fraction(float(x)) * Fraction(float(scale)) + Fraction(float(offset))
    candidates = [np.float32(float(exact))]
    candidates += [np.nextafter(candidates[0], np.float32(np.inf)),
                   np.nextafter(candidates[0], np.float32(-np.inf))]
    best = min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact),
                                          int(np.float32(c).view(np.uint32)) & 1))
    return np.float32(best)


def test_fma_emulation_is_correctly_rounded_near_halfway_points():
    rng = np.random.default_rng(0)
    x = (rng.integers(1, 2**24, 3000) * 2.0**-24).astype(np.float32)
    scale, offset = np.float32(0.6170001), np.float32(-0.2999999)
    got = mt19937.fma_to_float32(x, scale, offset)
    expected = np.array([exact_fma_float32(v, scale, offset) for v in x])
    assert np.array_equal(got, expected)


def test_matches_torch_self_check_passes_here():
    assert mt19937.matches_torch()
