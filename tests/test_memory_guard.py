"""The memory guard: a cell whose smallest chunk cannot fit is refused before anything is
written (issue 14, item 2)."""

from __future__ import annotations

import pytest

from gradprobe.bench.execute import memory_guard
from gradprobe.bench.execute.memory_guard import (
    check_memory,
    machine_memory,
    smallest_chunk_bytes,
)
from gradprobe.bench.execute.runner import run_sweep
from gradprobe.bench.plan.loader import parse_config
from gradprobe.core.errors import UserError

# 40 MB a seed: far over a 1 MiB budget, quick to build as a config.
WIDE = 'name = "wide"\n[model]\ndepth = 4\nwidth = 512\n[sweep]\nseeds = 2\n'
HUGE = 'name = "huge"\n[model]\ndepth = 64\nwidth = 8192\n[sweep]\nseeds = 2\n'


def test_machine_memory_is_positive_and_at_most_the_ram():
    import os

    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < machine_memory() <= ram


def test_one_seed_over_the_budget_is_refused_before_writing(tmp_path):
    """Bug: seeds_per_chunk fell back to one seed even when one seed needed more than
    --max-memory, and the cell ran (or was OOM-killed) anyway."""
    config = parse_config(WIDE, source="wide.toml")
    (cell,) = config.cells()
    assert smallest_chunk_bytes(cell) > 2**20
    with pytest.raises(UserError, match=r"wide.toml: cell depth 4, width 512.*one seed needs "
                                        r"about .* GiB, more than the memory budget"):
        run_sweep(config, out=tmp_path / "run", progress=False, max_memory=2**20)
    assert not (tmp_path / "run").exists()


def test_one_seed_over_the_machine_is_refused(tmp_path, monkeypatch):
    """Depth 64 x width 8192 needs about 80 GB a seed: refused on a smaller machine,
    whatever the budget, instead of being OOM-killed."""
    config = parse_config(HUGE, source="huge.toml")
    (cell,) = config.cells()
    assert smallest_chunk_bytes(cell) > 80 * 10**9
    monkeypatch.setattr(memory_guard, "device_memory", lambda device: 64 * 2**30)
    with pytest.raises(UserError, match=r"huge.toml: .*more than the memory of cpu of 64 GiB"):
        check_memory([cell], budget=2**50, source="huge.toml")
    with pytest.raises(UserError, match="memory of cpu"):
        run_sweep(config, out=tmp_path / "run", progress=False, max_memory=2**50)
    assert not (tmp_path / "run").exists()


def test_cells_that_fit_pass(tmp_path):
    config = parse_config(WIDE, source="wide.toml")
    check_memory(config.cells(), budget=2**30, source="wide.toml")


def test_training_state_counts(tmp_path):
    """A [train] cell's smallest chunk includes the optimizer state and the task."""
    trained = parse_config(WIDE + "[train]\nsteps = 2\n", source="t.toml")
    plain = parse_config(WIDE, source="w.toml")
    assert smallest_chunk_bytes(trained.cells()[0]) > smallest_chunk_bytes(plain.cells()[0])


def test_device_rng_counts_a_whole_block_of_at_most_the_cells_seeds():
    """Device-RNG chunks are whole generator blocks, but never more seeds than the cell has."""
    from gradprobe.bench.engine.batched import bytes_per_seed

    (cell,) = parse_config(WIDE.replace("[model]\n", '[model]\ninit_rng = "device"\n'),
                           source="d.toml").cells()
    assert smallest_chunk_bytes(cell) == 2 * bytes_per_seed(cell)


HUGE_GPT2 = """name = "huge-gpt2"
[model]
factory = "gradprobe.bench.models.hf:gpt2"
width = 16384
depth = 48
[data]
factory = "gradprobe.bench.models.hf:causal_tokens"
loss = "model"
[sweep]
seeds = 2
"""


def test_a_factory_model_too_big_for_the_machine_is_refused(tmp_path):
    """Issue 14 item 2, for factory models (which the guard used to skip): GPT-2 at width
    16384 x 48 blocks has ~155e9 parameters (12 x 48 x 16384^2), counted on the meta device
    (no memory), and is refused before anything is written instead of being OOM-killed
    building seed 0."""
    pytest.importorskip("transformers", reason="needs the models extra: pip install "
                                               "'gradprobe[models]'")
    from gradprobe.bench.execute.memory_guard import factory_lower_bound

    config = parse_config(HUGE_GPT2, source="huge-gpt2.toml")
    (cell,) = config.cells()
    assert factory_lower_bound(cell) > 150e9 * 6 * 4
    with pytest.raises(UserError, match=r"huge-gpt2.toml: cell factory "
                                        r"gradprobe.bench.models.hf:gpt2, depth 48, width 16384"
                                        r".*one seed needs about .* GiB, more than the memory"):
        run_sweep(config, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    small = parse_config(HUGE_GPT2.replace("16384", "32").replace("48", "2"), source="s.toml")
    check_memory(small.cells(), budget=2**30, source="s.toml")


def test_a_factory_that_cannot_build_on_meta_is_not_refused(tmp_path, monkeypatch):
    """No estimate is no refusal: a factory that reads its weights' values (impossible on
    the meta device) runs as before."""
    import sys
    import types

    import torch

    module = types.ModuleType("meta_shy")

    def shy(*, width: int, depth: int, seed: int) -> torch.nn.Module:
        net = torch.nn.Linear(width, width)
        assert net.weight.sum().item() == net.weight.sum().item()  # a value: fails on meta
        return net

    module.shy = shy
    monkeypatch.setitem(sys.modules, "meta_shy", module)
    config = parse_config('name = "shy"\n[model]\nfactory = "meta_shy:shy"\nwidth = 4\n'
                          '[sweep]\nseeds = 1\n', source="shy.toml")
    (cell,) = config.cells()
    assert memory_guard.factory_lower_bound(cell) is None
    check_memory([cell], budget=2**20, source="shy.toml")


GAINS = ('name = "gains"\n[model]\ndepth = 3\nwidth = 4\n[sweep]\nseeds = 400\n'
         'init_gain = [1.0, 1.5, 2.0]\nresidual = [false, true]\n')


def test_a_group_whose_records_outgrow_the_budget_is_split():
    """Bug: cells that share a draw were one task, and every cell's records and histograms
    waited in memory for the group's last seed (100 gains x 2 x 10,000 seeds: ~29 GB,
    OOM-killed before a cell was written)."""
    from gradprobe.bench.execute.runner import group_cells

    cells = parse_config(GAINS).cells()
    per_cell = memory_guard.held_bytes_per_seed(cells[0]) * 400
    # 3 parameters x (metrics + 184 histogram counts) x 8 bytes, twice, per seed
    assert per_cell == 2 * 3 * (len(memory_guard.METRICS) + 184) * 8 * 400
    assert [len(g) for g in group_cells(cells)] == [6]
    assert [len(g) for g in group_cells(cells, budget=int(2.5 * per_cell))] == [2, 2, 2]
    assert [len(g) for g in group_cells(cells, budget=1)] == [1] * 6


def test_split_groups_write_the_same_records(tmp_path):
    import pandas as pd

    config = parse_config(GAINS)
    for name, budget in (("whole", 2**30), ("split", 2**20)):
        run_sweep(config, out=tmp_path / name, progress=False, max_memory=budget)
    key = ["init_gain", "residual", "seed", "param"]
    whole, split = (pd.read_parquet(tmp_path / name / "records").sort_values(key)
                    .reset_index(drop=True) for name in ("whole", "split"))
    pd.testing.assert_frame_equal(whole, split)
    histograms = [pd.read_parquet(tmp_path / name / "histograms").sort_values(key)
                  .reset_index(drop=True) for name in ("whole", "split")]
    pd.testing.assert_frame_equal(*histograms)


def test_records_that_cannot_be_held_are_refused_before_writing(tmp_path, monkeypatch):
    config = parse_config(GAINS, source="gains.toml")
    monkeypatch.setattr(memory_guard, "machine_memory", lambda: 2**21)
    with pytest.raises(UserError, match=r"gains.toml: cell depth 3, width 4: the records of "
                                        r"its 400 seeds need about .* GiB .*--seeds.*"
                                        r"\[histograms\] enabled = false"):
        run_sweep(config, out=tmp_path / "run", progress=False, max_memory=2**20)
    assert not (tmp_path / "run").exists()
