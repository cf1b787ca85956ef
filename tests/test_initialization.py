"""The initial state equals torch.nn's, bit for bit, on every generation path."""

from __future__ import annotations

import pytest
import torch
import xxhash

from gradprobe.bench.init import initialization as init
from gradprobe.bench.models.reference import build_reference
from gradprobe.bench.plan.config import DataConfig, ModelConfig

SEEDS = [0, 1, 7, 123, 2**32 + 5]


def assert_matches_reference(model: ModelConfig, data: DataConfig, seeds, state):
    for row, seed in enumerate(seeds):
        net, x = build_reference(model, data, seed)
        names = [spec.name for spec in state.specs]
        assert names == [name for name, _ in net.named_parameters()]
        for spec, param, (_, ref) in zip(state.specs, state.params, net.named_parameters(),
                                         strict=True):
            assert torch.equal(param[row], ref.detach()), (spec.name, seed)
        assert torch.equal(state.inputs[row], x), seed


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("data_input", ["uniform", "normal", ((0.5, -1.0, 2.0),)])
@pytest.mark.parametrize("threads", [1, 2])
def test_bit_identical_to_nn_linear(bias, data_input, threads):
    model = ModelConfig(depth=4, width=3, bias=bias, out_features=2)
    data = DataConfig(input=data_input, batch_size=1)
    state = init.draw_initial_state(model, data, SEEDS, threads=threads)
    assert_matches_reference(model, data, SEEDS, state)


@pytest.mark.parametrize("scheme", ["kaiming_uniform", "kaiming_normal", "xavier_uniform",
                                    "xavier_normal", "orthogonal"])
@pytest.mark.parametrize("variant", [{}, {"bias": True, "out_features": 3},
                                     {"bias": True, "norm": "layernorm", "residual": True,
                                      "rezero": True}])
def test_init_schemes_bit_identical_to_model_apply(scheme, variant):
    # The reference builds the module, then model.apply(init) re-draws the weights and
    # zeroes the biases: the default draws are consumed first, as in users' code.
    model = ModelConfig(depth=4, width=5, init=scheme, **variant)
    data = DataConfig(batch_size=2)
    seeds = list(range(0, 1300, 13))  # enough seeds for the threaded paths
    state = init.draw_initial_state(model, data, seeds)
    assert_matches_reference(model, data, seeds[::9], init.InitialState(
        tuple(seeds[::9]), state.specs, state.buffer[::9], 2, state.fingerprints[::9]))


def test_vectorised_and_torch_paths_agree():
    for scheme in ("torch_default", "kaiming_uniform", "xavier_uniform"):
        model, data = ModelConfig(depth=5, width=10, bias=True, init=scheme), \
            DataConfig(batch_size=3)
        seeds = list(range(600))
        specs = init.mlp_param_specs(model)
        runs = init._vectorised_runs(model, data, specs, data.batch_size * model.width)
        assert runs is not None
        width = sum(s.numel for s in specs) + data.batch_size * model.width
        torch_rows = torch.zeros(len(seeds), width)
        vector_rows = torch.zeros(len(seeds), width)
        init._fill_with_torch(seeds, model, data, specs, torch_rows)
        init._fill_vectorised(seeds, runs, vector_rows)
        assert torch.equal(torch_rows, vector_rows), scheme


def test_blog_cell_uses_the_vectorised_generator_here():
    # Guards the speed path: if this fails, generation silently fell back to the slow loop.
    assert init.vectorised_generator_verified()
    model, data = ModelConfig(), DataConfig()
    runs = init._vectorised_runs(model, data, init.mlp_param_specs(model), 10)
    assert runs is not None and runs[-1][1] == 420
    normal = ModelConfig(init="kaiming_normal")
    assert init._vectorised_runs(normal, data, init.mlp_param_specs(normal), 10) is None


def test_large_cells_match_reference_through_threads():
    model, data = ModelConfig(depth=3, width=120), DataConfig()
    state = init.draw_initial_state(model, data, [3, 4, 5], threads=2)
    assert_matches_reference(model, data, [3, 4, 5], state)


def test_init_gain_scales_like_mul_on_the_module():
    model, data = ModelConfig(depth=3, width=4, init_gain=1.7), DataConfig()
    state = init.draw_initial_state(model, data, [2])
    net, _ = build_reference(model, data, 2)
    for scaled, (_, ref) in zip(init.scaled_params(state, 1.7), net.named_parameters(),
                                strict=True):
        assert torch.equal(scaled[0], ref.detach())


def test_fingerprint_identifies_the_draw():
    data = DataConfig()
    a = init.draw_initial_state(ModelConfig(depth=3, width=4), data, [0, 1])
    b = init.draw_initial_state(ModelConfig(depth=3, width=4, residual=True), data, [1, 0])
    c = init.draw_initial_state(ModelConfig(depth=3, width=5), data, [0])
    assert a.fingerprints == b.fingerprints[::-1]
    assert a.fingerprints[0] != a.fingerprints[1]
    assert c.fingerprints[0] != a.fingerprints[0]
    assert a.fingerprints[0] == "xxh3-" + xxhash.xxh3_64_hexdigest(a.buffer[0].numpy())
    assert all(init.fingerprint_scheme(f) == "xxh3" for f in a.fingerprints)


@pytest.mark.parametrize("scheme", ["torch_default", "kaiming_uniform", "xavier_uniform"])
@pytest.mark.parametrize("bias", [False, True])
def test_merged_uniform_runs_equal_the_replay(scheme, bias):
    # Large cells use one uniform_ call per merged run instead of replaying nn.init layer by
    # layer; the stream, and so every value, must be the same.
    model, data = ModelConfig(depth=6, width=48, init=scheme, bias=bias), DataConfig(batch_size=2)
    specs = init.mlp_param_specs(model)
    runs = init.merge_runs(init._vectorised_runs(model, data, specs, 96))
    width = sum(s.numel for s in specs) + 96
    replayed, merged = torch.zeros(30, width), torch.zeros(30, width)
    init._fill_with_torch(list(range(30)), model, data, specs, replayed)
    init._fill_torch_runs(list(range(30)), runs, merged)
    assert torch.equal(replayed, merged)
    if not bias and scheme == "torch_default":
        assert len(runs) == 2  # all weights in one call, then the input


@pytest.mark.parametrize("model,data", [
    (ModelConfig(depth=3, width=8, norm="layernorm"), DataConfig()),
    (ModelConfig(depth=3, width=8, residual=True, rezero=True, bias=True), DataConfig()),
    (ModelConfig(depth=3, width=8, init="xavier_normal"), DataConfig(input="normal")),
    (ModelConfig(depth=3, width=8, norm="batchnorm", init="orthogonal"),
     DataConfig(batch_size=2)),
    (ModelConfig(depth=2, width=2), DataConfig(input=((0.5, -1.0),))),
], ids=["layernorm", "rezero-bias", "xavier-normal-input", "batchnorm-orthogonal",
        "fixed-input"])
def test_a_reused_buffer_is_filled_with_the_same_state(model, data):
    """Every column of a reused buffer's rows is written again (kept buffers, batched.py,
    are reused across calls): constants, parameters of every scheme, the input."""
    fresh = init.draw_initial_state(model, data, [4, 5, 6])
    old = init.draw_initial_state(model, data, [0, 1, 2, 3])
    old.buffer.fill_(float("nan"))  # whatever a finished chunk left there
    again = init.draw_initial_state(model, data, [4, 5, 6], reuse=old.buffer)
    assert again.buffer.data_ptr() == old.buffer.data_ptr()
    assert torch.equal(again.buffer, fresh.buffer)
    assert again.fingerprints == fresh.fingerprints


def test_a_chunk_of_a_large_sweep_uses_the_compiled_generator(monkeypatch):
    # The chunk alone is too small to pay for loading Numba; the sweep it belongs to is not.
    model, data = ModelConfig(depth=3, width=16), DataConfig()
    calls = []
    compiled = init._fill_compiled
    monkeypatch.setattr(init, "_COMPILED_MIN_DRAWS", 100_000)
    monkeypatch.setattr(init, "numba_loaded", lambda: False)  # as in a fresh `gradprobe run`
    monkeypatch.setattr(init, "_fill_compiled", lambda *a: calls.append(1) or compiled(*a))
    alone = init.draw_initial_state(model, data, SEEDS)
    assert not calls
    chunk = init.draw_initial_state(model, data, SEEDS, planned_seeds=10_000)
    assert calls and init.compiled_generator() is not None
    assert torch.equal(chunk.buffer, alone.buffer)


def test_once_numba_is_loaded_a_small_draw_uses_the_compiled_generator(monkeypatch):
    # Histograms load Numba in most runs; then even (5, 10)'s draws go compiled: 3.4x
    # faster than numpy's, and one GIL-free call beside the pass instead of thousands.
    model, data = ModelConfig(depth=3, width=16), DataConfig()
    calls = []
    compiled = init._fill_compiled
    monkeypatch.setattr(init, "_fill_compiled", lambda *a: calls.append(1) or compiled(*a))
    monkeypatch.setattr(init, "numba_loaded", lambda: False)
    before = init.draw_initial_state(model, data, SEEDS)
    assert not calls
    monkeypatch.setattr(init, "numba_loaded", lambda: True)
    after = init.draw_initial_state(model, data, SEEDS)
    assert calls
    assert torch.equal(after.buffer, before.buffer)
    assert after.fingerprints == before.fingerprints
