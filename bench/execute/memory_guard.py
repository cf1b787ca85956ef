"""Refuse, before anything is written, a cell whose smallest chunk cannot fit in memory.

The engines split a cell's seeds into chunks within the memory budget (``--max-memory`` or
``[sweep] max_memory``), but never below one seed (one generator block in device-RNG mode):
a cell whose one seed needs more than the budget, or more than the machine has, used to start
anyway and be OOM-killed (depth 64 x width 8192 needs about 80 GB a seed). The estimate is the
engines' own (:func:`gradprobe.bench.engine.batched.bytes_per_seed`: parameters, gradients,
activations, reduction temporaries and, with ``[histograms]``, the histogram buffers of
:func:`gradprobe.bench.engine.histograms.histogram_bytes_per_seed`;
:func:`gradprobe.bench.engine.training.bytes_per_training_seed` adds the optimizer state and
the task), so the guard and the chunking agree. A factory model (``[model] factory``) is
built once on PyTorch's ``meta`` device (no memory, no values) and sized by its parameters,
their gradients and the engine's stacked copies
(:func:`gradprobe.bench.engine.generic.seeds_per_chunk`'s coefficients): a lower bound, since
its activations depend on its code; a factory that cannot build on ``meta`` is not checked.

Results wait in memory until their cell is written, and cells that share an initial draw
run as one task: :func:`split_by_held_bytes` cuts a group whose results would hold more than
the budget, and :func:`check_held_results` refuses a cell whose own results cannot be held.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from gradprobe.bench.engine.batched import bytes_per_seed
from gradprobe.bench.engine.metrics import METRICS
from gradprobe.bench.engine.training import bytes_per_training_seed, logged_steps
from gradprobe.bench.init.device_rng import block_size
from gradprobe.bench.init.initialization import mlp_param_specs
from gradprobe.bench.plan.sweep import Cell
from gradprobe.core.errors import UserError

# cgroup v2, then v1: a container's limit is what the OOM killer enforces, not the RAM size.
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def machine_memory() -> int:
    """Bytes of memory this process can have: physical memory, or the cgroup limit if lower."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for path in CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # "max" means no limit
            total = min(total, int(text))
    return total


@functools.cache
def device_memory(device: str) -> int:
    """Bytes of memory of ``device``: the GPU's total for ``cuda:N``, else the machine's."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return machine_memory()


def smallest_chunk_bytes(cell: Cell) -> int:
    """Working memory of the smallest chunk the engines run for ``cell``: one seed (a whole
    generator block, at most the cell's seeds, in device-RNG mode), the largest of the
    measurement and each ``[train]``."""
    per_seed = max([bytes_per_seed(cell),
                    *(bytes_per_training_seed(cell, train) for train in cell.trains)])
    if cell.model.init_rng == "device":
        per_seed *= min(block_size(cell.model, cell.data), len(cell.seeds))
    return per_seed


def factory_lower_bound(cell: Cell) -> int | None:
    """Bytes one seed of a factory cell needs at least: the generic engine's cost of its
    parameters (:func:`gradprobe.bench.engine.generic.parameter_bytes_per_seed`), counted on
    a module built on the ``meta`` device; None when the factory cannot build there."""
    import torch

    from gradprobe.bench.engine.generic import parameter_bytes_per_seed
    from gradprobe.bench.models.factory import factory_kwargs
    from gradprobe.bench.models.user_code import FACTORY_ERRORS, resolve_factory

    try:
        with torch.device("meta"):
            module = resolve_factory(cell.model.factory)(**factory_kwargs(cell.model, 0))
        sizes = [p.numel() for p in module.parameters()]
    except FACTORY_ERRORS:  # no estimate, no refusal: the run itself reports a failing factory
        return None
    return parameter_bytes_per_seed(sizes, cell)


def held_bytes_per_seed(cell: Cell) -> int:
    """Host bytes of one seed's results that a task holds until it writes ``cell``: per
    parameter the float64 metrics and, with ``[histograms]``, the int64 count vector, at
    initialisation and at each logged step of each ``[train]``; twice, since the chunks'
    parts are concatenated before the write. 0 for a factory model (its parameter count
    needs the model; its cells are measured and written one at a time)."""
    if cell.model.factory:
        return 0
    counts = cell.histograms.n_counts if cell.histograms else 0
    per_step = len(mlp_param_specs(cell.model)) * (len(METRICS) + counts) * 8
    steps = 1 + sum(len(logged_steps(train)) for train in cell.trains)
    return 2 * per_step * steps


def split_by_held_bytes(group: Sequence[Cell], budget: int) -> list[list[Cell]]:
    """``group`` (cells sharing their initial draw) cut into runs of consecutive cells whose
    results held together stay within ``budget`` bytes (at least one cell each). A group is
    measured as one task so that the draw is made once, but all its cells' results wait in
    memory for the last seed: 100 ``init_gain`` values x plain/residual x 10,000 seeds with
    histograms held ~29 GB and was OOM-killed. Each part draws again: the same values, since
    a seed's draw depends on the seed alone."""
    parts: list[list[Cell]] = []
    held = 0
    for cell in group:
        need = held_bytes_per_seed(cell) * len(cell.seeds)
        if not parts or held + need > budget:
            parts.append([])
            held = 0
        parts[-1].append(cell)
        held += need
    return parts


def check_memory(cells: Sequence[Cell], budget: int, source: str | None = None) -> None:
    """UserError naming the first cell (from config ``source``) whose smallest chunk needs
    more than ``budget`` bytes or more than its device has, or whose results, held until
    the cell is written, need more than the machine has; nothing is written before."""
    for cell in cells:
        need = factory_lower_bound(cell) if cell.model.factory else smallest_chunk_bytes(cell)
        if need is None:
            continue
        machine = device_memory(cell.device)
        limit, what = ((budget, "the memory budget (--max-memory or [sweep] max_memory)")
                       if budget <= machine else (machine, f"the memory of {cell.device}"))
        if need > limit:
            m, d = cell.model, cell.data
            model = f"factory {m.factory}, " if m.factory else ""
            raise UserError(
                f"{source or 'config'}: cell {model}depth {m.depth}, width {m.width}, batch_size "
                f"{d.batch_size}, dtype {cell.dtype}: one seed needs about {gib(need)}, more "
                f"than {what} of {gib(limit)}; make the cell smaller"
                + (" or raise --max-memory" if limit == budget else ""))
        check_held_results(cell, need, source)


def check_held_results(cell: Cell, chunk: int, source: str | None) -> None:
    """UserError when ``cell``'s results (:func:`held_bytes_per_seed`) and its smallest
    chunk's ``chunk`` bytes of working memory together need more than the machine has."""
    held = held_bytes_per_seed(cell) * len(cell.seeds)
    machine = machine_memory()
    if held + chunk > machine:
        m = cell.model
        raise UserError(
            f"{source or 'config'}: cell depth {m.depth}, width {m.width}: the records of its "
            f"{len(cell.seeds)} seeds need about {gib(held)} of memory until the cell is "
            f"written, more than the machine's {gib(machine)} with a chunk's working memory; "
            "run fewer seeds per run (--seeds), or set [histograms] enabled = false")


def gib(size: int) -> str:
    return f"{size / 2**30:.3g} GiB"
