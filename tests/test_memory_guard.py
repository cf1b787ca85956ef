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
