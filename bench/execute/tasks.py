"""One task: a group of cells that share their initial draw, measured (and trained) and
written to the run directory, in whichever process runs it.

The runner (:mod:`gradprobe.bench.execute.runner`) plans the tasks and the executors
(:mod:`gradprobe.bench.execute.executors`) carry them to processes or a Dask cluster; both
call down into this module, which knows neither of them. A task payload is a plain JSON-able
dict (cells as :meth:`gradprobe.bench.plan.sweep.Cell.to_json`), so nothing but
configuration crosses process or machine boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gradprobe.bench.engine.batched import (
    DEFAULT_MAX_MEMORY,
    measure_group,
    release_draw_buffers,
)
from gradprobe.bench.engine.factory_training import train_factory_cell
from gradprobe.bench.engine.generic import measure_factory
from gradprobe.bench.engine.training import train_cell
from gradprobe.bench.init.initialization import mlp_param_specs
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.sweep import Cell
from gradprobe.bench.store.histogram_records import histogram_table, write_histograms
from gradprobe.bench.store.records import cell_table, write_cell
from gradprobe.bench.store.run_dir import cell_is_done
from gradprobe.bench.store.train_records import write_training
from gradprobe.core.errors import UserError, toml_repr

Progress = Callable[[int, int], None]  # (seeds just finished, cells just finished)
Timings = dict[str, dict[str, float]]


def task_payload(group: list[Cell], run_dir: Path, manifest: dict[str, Any],
                 max_memory: int) -> dict[str, Any]:
    return {"run_dir": str(run_dir), "cells": [c.to_json() for c in group],
            "manifest": manifest, "max_memory": max_memory}


def run_task(payload: dict[str, Any], threads: int | None = None) -> Timings:
    """Run one task (in any process): rebuild the cells, measure, write their records."""
    if threads:
        torch.set_num_threads(threads)
    cells = [Cell.from_json(c) for c in payload["cells"]]
    return run_group(cells, Path(payload["run_dir"]), payload["manifest"],
                     max_memory=payload["max_memory"])


def run_group(group: list[Cell], run_dir: Path, manifest: dict[str, Any], *,
              max_memory: int = DEFAULT_MAX_MEMORY,
              on_progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """Measure a group of cells sharing initial state and write each cell's records.

    Returns ``{cell_id: timing}`` for the cells it ran (finished cells are skipped)."""
    todo = [c for c in group if not cell_is_done(run_dir, c)]
    if not todo:
        return {}
    try:
        measured = _measure(todo, max_memory,
                            on_chunk=(lambda n: on_progress(n, 0)) if on_progress else None)
    finally:  # training, the next group and a worker between tasks each get the whole budget
        release_draw_buffers()
    timings = {}
    for cell in todo:
        result, specs, extra = measured.pop(cell.cell_id)
        check_distinct_states(cell, result.seeds, result.fingerprints)
        table = cell_table(cell, specs, result.seeds, result.values, result.loss,
                           result.fingerprints)
        timing = {"compute_seconds": round(result.compute_seconds, 6),
                  "init_seconds": round(result.init_seconds, 6), "n_seeds": len(result.seeds),
                  "rows": table.num_rows, **extra}
        if result.threads:  # set by the MLP engine's CPU policy
            timing["threads"] = result.threads
        # training and histogram files first: the records file marks the cell as done
        trained = _train(cell, specs, run_dir, max_memory) if cell.trains else []
        if trained:
            timing["train_seconds"] = round(sum(r.seconds for r in trained), 6)
        if cell.histograms:
            write_histograms(run_dir, cell, histogram_table(cell, specs, result.seeds,
                                                            result.histograms, trained))
        write_cell(run_dir, cell, table, manifest, timing)
        timings[cell.cell_id] = timing
        if on_progress:
            on_progress(0, 1)
    return timings


def check_distinct_states(cell: Cell, seeds, fingerprints) -> None:
    """Refuse a cell in which two seeds start from the same initial state (equal
    ``init_fingerprint``): their records would be counted as independent replicates, while
    the seed is the unit of replication. This happens when the initial state ignores the
    seed (a factory that sets its weights without torch's generator, with a fixed input).
    Raised before the cell's file is written, so nothing is half-recorded."""
    first: dict[str, int] = {}
    for seed, fingerprint in zip(seeds, fingerprints, strict=True):
        if fingerprint in first:
            raise UserError(f"cell {cell.cell_id} ({_describe(cell)}): seeds "
                            f"{first[fingerprint]} and {int(seed)} start from the same "
                            f"initial state (fingerprint {fingerprint}), so they are not "
                            "independent replicates; make the initial parameters or input "
                            "depend on the seed (a factory must draw from torch's generator)")
        first[fingerprint] = int(seed)


def _describe(cell: Cell) -> str:
    """The cell's axes that differ from the defaults, for messages."""
    base = Cell(ModelConfig(), DataConfig(), "cpu", "float32", cell.seeds).axes()
    shown = {k: v for k, v in cell.axes().items() if base.get(k) != v}
    return ", ".join(f"{k} = {toml_repr(v)}" for k, v in shown.items()) or "defaults"


def _measure(todo: list[Cell], max_memory: int, on_chunk) -> dict[str, tuple]:
    """``{cell_id: (ChunkResult, specs, extra timing)}`` at initialisation: the MLP engine
    for a group sharing its draw, or the generic engine for factory cells (one by one: each
    builds its own modules; ``extra`` says whether ``vmap`` or a loop batched the seeds)."""
    if not todo[0].model.factory:
        results = measure_group(todo, max_memory=max_memory, on_chunk=on_chunk)
        specs = mlp_param_specs(todo[0].model)
        return {cell_id: (result, specs, {}) for cell_id, result in results.items()}
    measured = {}
    for cell in todo:
        done = measure_factory(cell, max_memory=max_memory)
        measured[cell.cell_id] = (done.result, done.specs, {"batching": {
            "mode": done.batching, "reason": done.reason, "notes": done.notes}})
        if on_chunk:
            on_chunk(len(cell.seeds))
    return measured


def _train(cell: Cell, specs, run_dir: Path, max_memory: int) -> list:
    """Train ``cell`` under each of its training setups, write its training records and
    return the :class:`gradprobe.bench.engine.training.TrainResult` of each setup."""
    results = (train_factory_cell(cell) if cell.model.factory  # seed by seed
               else train_cell(cell, max_memory=max_memory))
    write_training(run_dir, cell, specs, results)
    return results
