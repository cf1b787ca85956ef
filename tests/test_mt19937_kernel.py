"""The compiled MT19937 kernel reproduces torch's CPU uniform_ and the nn.init stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradprobe.bench.init import initialization as init
from gradprobe.bench.init import mt19937, mt19937_kernel
from gradprobe.bench.models.reference import build_reference
from gradprobe.bench.plan.config import DataConfig, ModelConfig


@pytest.mark.parametrize("low,high", [(-0.316, 0.316), (0.0, 1.0), (-0.0625, 0.0625)])
def test_uniform_matches_torch_across_twists(low, high):
    seeds = [0, 1, 2, 99, 2**31 + 3, 2**40 + 11]
    n = 3 * 624 + 17  # crosses three twists and ends mid-block
    out = np.empty((len(seeds), n), dtype=np.float32)
    mt19937_kernel.uniform_runs(seeds, [(0, n, low, high, (0, n))], out)
    for row, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(seed)
        expected = torch.empty(n).uniform_(low, high, generator=generator).numpy()
        assert np.array_equal(out[row], expected), seed


def test_runs_land_at_their_destinations_and_discards_consume_the_stream():
    # Runs that start and stop inside a 624-word block, one discarded, destinations out of
    # stream order (a scheme's weights land where the default draws would have).
    runs = [(0, 700, -0.5, 0.5, None), (700, 710, 0.0, 1.0, (20, 30)),
            (710, 730, -0.25, 0.25, (0, 20))]
    out = np.zeros((3, 30), dtype=np.float32)
    mt19937_kernel.uniform_runs([4, 5, 6], runs, out)
    for row, seed in enumerate([4, 5, 6]):
        generator = torch.Generator().manual_seed(seed)
        torch.empty(700).uniform_(-0.5, 0.5, generator=generator)
        second = torch.rand(10, generator=generator)
        third = torch.empty(20).uniform_(-0.25, 0.25, generator=generator)
        assert np.array_equal(out[row], torch.cat([third, second]).numpy())


def test_matches_torch_self_check_passes_here():
    assert mt19937_kernel.matches_torch()
    assert init.compiled_generator() is mt19937_kernel


def test_exact_in_float64_holds_for_symmetric_and_unit_bounds():
    assert mt19937.exact_in_float64([(0, 1, -0.3162, 0.3162), (1, 2, 0.0, 1.0)])
    assert not mt19937.exact_in_float64([(0, 1, -0.2999999, 0.3170002)])


@pytest.mark.parametrize("scheme", ["torch_default", "kaiming_uniform", "xavier_uniform"])
@pytest.mark.parametrize("bias", [False, True])
def test_initial_state_through_the_kernel_equals_nn(monkeypatch, scheme, bias):
    monkeypatch.setattr(init, "_COMPILED_MIN_DRAWS", 0)
    model = ModelConfig(depth=3, width=40, init=scheme, bias=bias, out_features=3)
    data = DataConfig(batch_size=2)
    seeds = [0, 9, 2**32 + 5]
    state = init.draw_initial_state(model, data, seeds, threads=2)
    for row, seed in enumerate(seeds):
        net, x = build_reference(model, data, seed)
        for param, (name, ref) in zip(state.params, net.named_parameters(), strict=True):
            assert torch.equal(param[row], ref.detach()), (name, seed)
        assert torch.equal(state.inputs[row], x)
