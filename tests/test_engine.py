"""The seed-batched engine agrees with the blog's literal nn.Module loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import run_text, smoke_text

from gradprobe.bench.engine import batched
from gradprobe.bench.engine.batched import (
    bytes_per_seed,
    draw_bytes_per_seed,
    measure_group,
    run_chunk,
    seeds_per_chunk,
)
from gradprobe.bench.engine.cpu_policy import CpuPolicy
from gradprobe.bench.engine.metrics import METRICS
from gradprobe.bench.init.initialization import draw_initial_state, mlp_param_specs
from gradprobe.bench.models.reference import build_reference
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.sweep import Cell

SEEDS = (0, 1, 2, 3, 11)


def reference_metrics(model: ModelConfig, data: DataConfig, seed: int, dtype=torch.float32):
    """Per parameter: the blog's grad.abs().mean() and the other metrics, from nn.Module."""
    net, x = build_reference(model, data, seed, dtype)
    outputs = net(x)
    for h in outputs:
        h.retain_grad()
    loss = torch.nn.functional.mse_loss(outputs[-1], torch.full_like(outputs[-1], data.target))
    loss.backward()
    rows = []
    for name, p in net.named_parameters():
        layer = int(name.split(".")[1])
        g, h = p.grad.double(), outputs[layer]
        rows.append({
            "param": name,
            "grad_mean_abs": p.grad.abs().mean().item(),
            "grad_l2": g.norm().item(),
            "grad_max_abs": g.abs().max().item(),
            "grad_nonfinite": int((~torch.isfinite(g)).sum()),
            "grad_zero": int((g == 0).sum()),
            "weight_l2": p.detach().double().norm().item(),
            "act_rms": h.detach().double().square().mean().sqrt().item(),
            "grad_act_rms": h.grad.double().square().mean().sqrt().item(),
        })
    return rows, loss.item()


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("model_kwargs", [
    {},
    {"bias": True, "out_features": 3},
    {"activation": "tanh", "output_activation": True},
    {"activation": "gelu_tanh", "init_gain": 1.3, "depth": 3, "width": 6},
    {"activation": "leaky_relu", "init": "kaiming_normal"},
    {"activation": "silu", "init": "orthogonal", "bias": True},
    {"init": "xavier_uniform", "norm": "layernorm", "norm_position": "pre", "bias": True},
    {"norm": "layernorm", "norm_position": "post", "init": "xavier_normal"},
])
def test_records_match_literal_module(residual, model_kwargs, dtype="float32", rel=2e-5,
                                     exact_counts=True, floor=1e-30):
    model = ModelConfig(residual=residual, **model_kwargs)
    data = DataConfig(batch_size=3, target=0.5)
    cell = Cell(model, data, "cpu", dtype, SEEDS)
    result = run_chunk(cell, draw_initial_state(model, data, SEEDS))
    for row, seed in enumerate(SEEDS):
        expected, loss = reference_metrics(model, data, seed, getattr(torch, dtype))
        assert result.loss[row] == pytest.approx(loss, rel=rel)
        for index, ref in enumerate(expected):
            for m, metric in enumerate(METRICS):
                got = result.values[row, index, m]
                if metric in ("grad_nonfinite", "grad_zero"):
                    if exact_counts:
                        assert got == ref[metric], (ref["param"], metric)
                else:
                    assert got == pytest.approx(ref[metric], rel=rel, abs=floor), \
                        (seed, ref["param"], metric)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("position", ["pre", "post"])
def test_batchnorm_matches_literal_module_in_float64(residual, position):
    # Normalising over a batch of 3 subtracts nearly equal numbers, which amplifies the last
    # bits of float32 summation-order differences (batched vs single matmul) up to ~1e-4.
    # In float64 the two computations agree to ~1e-12: the arithmetic is the same. BatchNorm
    # also makes some gradient entries zero only by cancellation, and whether such an entry
    # lands on exactly 0.0 (or on 1e-16) depends on operation order, so exact-zero counts
    # are not compared and values below 1e-12 (gradients here are of order 1) count as 0.
    kwargs = {"norm": "batchnorm", "norm_position": position, "bias": True}
    test_records_match_literal_module(residual, kwargs, dtype="float64", rel=1e-10,
                                      exact_counts=False, floor=1e-12)


def test_batchnorm_needs_a_batch():
    from gradprobe.bench.plan.loader import parse_config
    from gradprobe.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[model\] norm = \"batchnorm\": .*batch_size > 1"):
        parse_config('name = "b"\n[model]\nnorm = "batchnorm"\n')


@pytest.mark.parametrize("model_kwargs", [
    {"residual_form": "pre"},
    {"residual_scale": "1/sqrt(depth)", "bias": True},
    {"residual_scale": 0.25, "residual_form": "pre", "norm": "layernorm"},
    {"rezero": True, "bias": True},
])
def test_residual_variants_match_literal_module(model_kwargs):
    test_records_match_literal_module(True, model_kwargs)


def test_rezero_at_initialisation_only_the_scales_learn():
    # ReZero's branch scale starts at 0: the network is the identity plus the output layer,
    # so every hidden Linear gradient is exactly zero and only the scales get a gradient.
    model, data = ModelConfig(residual=True, rezero=True), DataConfig()
    cell = Cell(model, data, "cpu", "float32", SEEDS)
    result = run_chunk(cell, draw_initial_state(model, data, SEEDS))
    specs = mlp_param_specs(model)
    hidden = [i for i, s in enumerate(specs) if s.kind == "weight" and s.layer < 4]
    alphas = [i for i, s in enumerate(specs) if s.kind == "alpha"]
    assert (result.values[:, hidden, 0] == 0).all()
    assert (result.values[:, alphas, 0] > 0).all()


def test_float64_cell_matches_module_cast_to_double():
    model, data = ModelConfig(residual=True), DataConfig()
    cell = Cell(model, data, "cpu", "float64", SEEDS)
    result = run_chunk(cell, draw_initial_state(model, data, SEEDS))
    for row, seed in enumerate(SEEDS):
        expected, _ = reference_metrics(model, data, seed, torch.float64)
        got = result.values[row, :, 0]
        assert np.allclose(got, [r["grad_mean_abs"] for r in expected], rtol=1e-12)


def test_blog_magnitudes_plain_vs_residual():
    # The blog's single-seed table: about 1e-5 per layer without skips, 1e-2 with them.
    data, seeds = DataConfig(), tuple(range(200))
    logs = {}
    for residual in (False, True):
        cell = Cell(ModelConfig(residual=residual), data, "cpu", "float32", seeds)
        values = run_chunk(cell, draw_initial_state(cell.model, data, seeds)).values[:, :4, 0]
        values = values[(values > 0).all(axis=1)]
        logs[residual] = np.log10(values).mean()
    assert -6.5 < logs[False] < -4.0
    assert -2.5 < logs[True] < -0.5


def test_chunks_reproduce_a_single_chunk():
    model, data = ModelConfig(depth=3, width=8, residual=True), DataConfig()
    cell = Cell(model, data, "cpu", "float32", tuple(range(40)))
    whole = measure_group([cell])[cell.cell_id]
    tiny_budget = 7 * bytes_per_seed(cell)
    assert seeds_per_chunk(cell, tiny_budget) == 7
    chunked = measure_group([cell], max_memory=tiny_budget)[cell.cell_id]
    assert np.array_equal(whole.seeds, chunked.seeds)
    assert np.array_equal(whole.values, chunked.values)
    assert list(whole.fingerprints) == list(chunked.fingerprints)


def test_a_second_call_draws_into_the_first_calls_buffers_with_the_same_records():
    """Bug: every call allocated fresh draw buffers, whose pages the kernel faults in; at
    (20, 64) a call's first two draws took 90-115 ms instead of 6-10 ms and the benchmark's
    first rounds ran 1.8x slower than the rest. Kept buffers must not change a record, also
    when the next chunk is drawn beside the current one's pass (the policy here says so):
    the last chunk's buffer was once kept twice, the next call drew two chunks into it at
    once, and 34 of 40 seeds' records changed."""
    model, data = ModelConfig(depth=3, width=8, residual=True), DataConfig()
    cell = Cell(model, data, "cpu", "float32", tuple(range(40)))
    overlapped = CpuPolicy(cpus=2, threads=2)
    assert overlapped.draws_beside(overlapped.threads_for(model.width))
    batched._kept.take(0, 0)  # start with no kept buffer
    whole = measure_group([cell], policy=overlapped)[cell.cell_id]
    budget = 20 * bytes_per_seed(cell)
    chunked = measure_group([cell], max_memory=budget, policy=overlapped)[cell.cell_id]
    kept = list(batched._kept._buffers)  # the 40-row buffer was freed: chunks are shorter
    pointers = {b.data_ptr() for b in kept}
    assert len(kept) == len(pointers) == 2 and sum(b.nbytes for b in kept) <= budget // 2
    assert all(b.shape[1] == draw_bytes_per_seed(cell) // 4 and b.shape[0] < 40 for b in kept)
    for buffer in kept:  # a reused buffer must be written again in full
        buffer.fill_(float("nan"))
    again = measure_group([cell], max_memory=budget, policy=overlapped)[cell.cell_id]
    for result in (chunked, again):
        assert np.array_equal(whole.values, result.values)
        assert list(whole.fingerprints) == list(result.fingerprints)
    assert {b.data_ptr() for b in batched._kept._buffers} == pointers  # drawn into again


def test_kept_buffers_of_another_shape_are_freed_and_the_budget_holds():
    keeper = batched._KeptBuffers()
    small, large = torch.zeros(4, 10), torch.zeros(16, 10)
    keeper.keep([small, large[:3], None, large, small[:2]], limit=large.nbytes + small.nbytes)
    assert [b.shape[0] for b in keeper._buffers] == [4, 16]  # a short chunk's whole buffer
    assert keeper.take(8, 10) is None and keeper._buffers == []  # larger ones are not lent
    keeper.keep([small, large], limit=large.nbytes + small.nbytes)
    assert keeper.take(16, 10) is large
    assert keeper.take(2, 11) is None and keeper._buffers == []  # other width: all freed
    keeper.keep([small, large], limit=large.nbytes)
    assert [b.shape[0] for b in keeper._buffers] == [4]  # the second would pass the limit


def test_a_sweep_frees_its_kept_draw_buffers_when_it_ends(tmp_path, monkeypatch):
    """The engine keeps draw buffers for its next call, but a sweep frees them after each
    group: training and the next group get their whole budget, and a notebook holds none
    (up to 256 MiB) after the sweep returns."""
    seen = []
    keep = batched._KeptBuffers.keep

    def spy(self, buffers, limit):
        keep(self, buffers, limit)
        seen.append(len(self._buffers))

    monkeypatch.setattr(batched._KeptBuffers, "keep", spy)
    run_text(tmp_path / "run", smoke_text(seeds=6))
    assert seen and max(seen) > 0  # the engine kept buffers after each measurement
    assert batched._kept._buffers == []


def test_group_cells_share_initial_weights():
    data, seeds = DataConfig(), (5, 6, 7)
    cells = [Cell(ModelConfig(residual=r), data, "cpu", "float32", seeds) for r in (False, True)]
    results = measure_group(cells)
    plain, res = (results[c.cell_id] for c in cells)
    assert list(plain.fingerprints) == list(res.fingerprints)
    weight_l2 = METRICS.index("weight_l2")
    assert np.array_equal(plain.values[:, :, weight_l2], res.values[:, :, weight_l2])
    assert not np.array_equal(plain.values[:, :, 0], res.values[:, :, 0])


def test_nonfinite_gradients_are_counted_not_crashed_on():
    model, data = ModelConfig(depth=4, width=4, init_gain=1e25), DataConfig()
    cell = Cell(model, data, "cpu", "float32", (0, 1))
    result = run_chunk(cell, draw_initial_state(model, data, cell.seeds))
    nonfinite = result.values[:, :, METRICS.index("grad_nonfinite")]
    mean_abs = result.values[:, :, 0]
    assert (nonfinite > 0).any()
    assert np.array_equal(nonfinite > 0, ~np.isfinite(mean_abs))
    assert len(mlp_param_specs(model)) == result.values.shape[1]


def test_regression_cells_with_and_without_norm_parameters_are_not_grouped():
    # Bug: INIT_KEYS lacked norm and rezero, so a LayerNorm cell was grouped with a cell
    # without norms and run on its state, which has no norm parameters (KeyError).
    from gradprobe.bench.execute.runner import group_cells

    data, seeds = DataConfig(batch_size=2), (0, 1)
    cells = [Cell(ModelConfig(residual=True, **kw), data, "cpu", "float32", seeds)
             for kw in ({}, {"norm": "layernorm"}, {"rezero": True})]
    assert len(group_cells(cells)) == 3
    results = measure_group(cells[1:2])
    assert results[cells[1].cell_id].values.shape[1] == len(mlp_param_specs(cells[1].model))
