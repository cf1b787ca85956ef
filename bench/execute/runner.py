"""Run a sweep into a run directory: plan, lock, tasks, records, manifest.

Cells that share their initial state (same seeds, architecture and input; see
``gradprobe.bench.plan.sweep.INIT_KEYS``) form a group: each chunk of seeds is drawn once and
measured under
every cell of the group, so plain and residual cells see the very same weights. Every cell's
records are written atomically under a name that is the cell's content hash; cells whose
file exists are skipped, so running the same command again after a crash, a SIGKILL or a
Ctrl-C finishes the sweep with exactly the records of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradprobe.bench.engine.batched import DEFAULT_MAX_MEMORY, measure_group
from gradprobe.bench.engine.generic import measure_factory
from gradprobe.bench.engine.training import train_cell
from gradprobe.bench.execute.executors import Executor, open_executor, task_payload
from gradprobe.bench.execute.progress import SweepProgress
from gradprobe.bench.execute.stop_signals import StopFlag, catch_stop_signals
from gradprobe.bench.init.initialization import mlp_param_specs
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.devices import device_available
from gradprobe.bench.plan.sweep import Cell, ExperimentConfig
from gradprobe.bench.store.manifest import MANIFEST_FILE, new_manifest, utc_now
from gradprobe.bench.store.records import cell_path, cell_table, record_manifest, write_cell
from gradprobe.bench.store.run_dir import (
    RECORD_FOLDERS,
    claim_run_dir,
    collect_timings,
    count_rows,
    create_run_dir,
    default_run_dir,
    finished_cells,
    plan_id,
)
from gradprobe.bench.store.run_lock import remove_stale_temporaries, run_lock
from gradprobe.bench.store.train_records import write_training
from gradprobe.core.atomic_files import write_json_atomic, write_text_atomic
from gradprobe.core.errors import ConfigError, UserError, toml_repr

Progress = Callable[[int, int], None]  # (seeds just finished, cells just finished)
__all__ = ["RunResult", "check_devices", "default_run_dir", "plan_cells", "run_sweep"]


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    cells_run: int
    cells_skipped: int
    rows: int  # in the run directory once done, resumed cells included
    rows_new: int  # written by this invocation
    seconds: float


def plan_cells(config: ExperimentConfig) -> tuple[list[Cell], list[dict[str, Any]]]:
    """The cells to run here and the skipped ones.

    A device this machine lacks is an error naming the config, unless the config says
    ``on_missing_device = "skip"``: then its cells are skipped and each skip is returned as
    ``{"device", "reason", "cells"}`` for the manifest and the report.
    """
    all_cells = config.cells()
    cells, skipped = [], []
    for device in dict.fromkeys(c.device for c in all_cells):
        ok, why = device_available(device)
        on_device = [c for c in all_cells if c.device == device]
        if ok:
            cells += on_device
        elif config.sweep.on_missing_device == "skip":
            skipped.append({"device": device, "reason": why,
                            "cells": [c.cell_id for c in on_device]})
        else:
            err = ConfigError("sweep.device", f"is not available ({why}); remove it, use "
                              '"auto", or set on_missing_device = "skip"', device)
            err.source = config.source
            raise err
    order = {c.cell_id: i for i, c in enumerate(all_cells)}
    return sorted(cells, key=lambda c: order[c.cell_id]), skipped


def check_devices(config: ExperimentConfig) -> None:
    """Fail before anything is written if a requested device is missing (and not skipped)."""
    plan_cells(config)


def group_cells(cells: list[Cell]) -> list[list[Cell]]:
    """Cells grouped by initial state, groups in order of first appearance."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.init_key, []).append(cell)
    return list(groups.values())


def run_group(group: list[Cell], run_dir: Path, manifest: dict[str, Any], *,
              max_memory: int = DEFAULT_MAX_MEMORY,
              on_progress: Progress | None = None) -> dict[str, dict[str, float]]:
    """Measure a group of cells sharing initial state and write each cell's records.

    Returns ``{cell_id: timing}`` for the cells it ran (finished cells are skipped)."""
    todo = [c for c in group if not cell_path(run_dir, c.cell_id).exists()]
    if not todo:
        return {}
    measured = _measure(todo, max_memory,
                        on_chunk=(lambda n: on_progress(n, 0)) if on_progress else None)
    timings = {}
    for cell in todo:
        result, specs, extra = measured.pop(cell.cell_id)
        check_distinct_states(cell, result.seeds, result.fingerprints)
        table = cell_table(cell, specs, result.seeds, result.values, result.loss,
                           result.fingerprints)
        timing = {"compute_seconds": round(result.compute_seconds, 6),
                  "init_seconds": round(result.init_seconds, 6), "n_seeds": len(result.seeds),
                  "rows": table.num_rows, **extra}
        if cell.trains:  # training files first: the records file marks the cell as done
            timing["train_seconds"] = round(_train(cell, specs, run_dir, max_memory), 6)
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
            raise UserError(f"cell {cell.cell_id} ({_describe(cell)}): seeds {first[fingerprint]} "
                            f"and {int(seed)} start from the same initial state (fingerprint "
                            f"{fingerprint}), so they are not independent replicates; make "
                            "the initial parameters or input depend on the seed (a factory "
                            "must draw from torch's generator)")
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


def _train(cell: Cell, specs, run_dir: Path, max_memory: int) -> float:
    """Train ``cell`` under each of its training setups and write its training records."""
    results = train_cell(cell, max_memory=max_memory)
    write_training(run_dir, cell, specs, results)
    return sum(r.seconds for r in results)


def apply_numerics(config: ExperimentConfig) -> None:
    """Set TF32 as the config says (off by default: float32 cells must mean float32)."""
    torch.backends.cuda.matmul.allow_tf32 = config.sweep.tf32
    torch.backends.cudnn.allow_tf32 = config.sweep.tf32


def peak_memory(devices: list[str]) -> dict[str, Any]:
    """Peak host RSS of this process and peak allocated memory per CUDA device, in bytes."""
    import resource

    peak = {"host_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    peak["devices"] = {d: torch.cuda.max_memory_allocated(torch.device(d))
                       for d in devices if d.startswith("cuda")}
    return peak


def _start_manifest(config, cells, skipped, overrides, budget,
                    executor: Executor) -> dict[str, Any]:
    manifest = new_manifest(config, cells, overrides or {})
    manifest.update(plan=plan_id(cells), skipped=skipped, executor=executor.manifest_entry(),
                    settings={"max_memory": budget, "tf32": config.sweep.tf32,
                              "on_missing_device": config.sweep.on_missing_device,
                              "executor": executor.name})
    return manifest


def run_sweep(config: ExperimentConfig, *, out: Path | None = None, force: bool = False,
              max_memory: int | None = None, progress: bool = True,
              overrides: dict[str, Any] | None = None, executor: str = "local",
              workers: int | None = None, scheduler: str | None = None,
              on_start: Callable[[Path, int, int], None] | None = None) -> RunResult:
    """Run every cell of ``config`` into ``out`` (default :func:`default_run_dir`).

    ``max_memory`` (bytes per chunk) overrides the config's ``[sweep] max_memory``;
    ``executor`` is ``local``, ``processes`` (``workers``) or ``dask`` (``scheduler``).
    ``on_start(run_dir, cells, cells_done)`` is called once every check has passed."""
    cells, skipped = plan_cells(config)
    budget = max_memory or config.sweep.max_memory or DEFAULT_MAX_MEMORY
    run_dir = Path(out) if out is not None else default_run_dir(config)
    # The executor starts first: a scheduler that cannot be reached must not leave a
    # half-made run directory behind.
    with open_executor(executor, workers, scheduler) as started:
        create_run_dir(run_dir)
        with run_lock(run_dir), catch_stop_signals() as stop:
            manifest, done = _prepare(config, run_dir, cells, skipped, force=force,
                                      overrides=overrides, budget=budget, executor=started)
            if on_start:
                on_start(run_dir, len(cells), len(done))
            seconds = _run_and_record(cells, done, run_dir, manifest, budget, progress,
                                      started, stop)
    rows = count_rows(run_dir, cells)
    return RunResult(run_dir, len(cells) - len(done), len(done), rows,
                     rows - count_rows(run_dir, done), seconds)


def _prepare(config, run_dir, cells, skipped, *, force, overrides, budget,
             executor: Executor) -> tuple[dict[str, Any], list[Cell]]:
    """Claim the directory (under the lock), write the manifest, find the finished cells."""
    claim_run_dir(run_dir, cells, force)
    for folder in RECORD_FOLDERS:
        remove_stale_temporaries(run_dir / folder)
    apply_numerics(config)
    manifest = _start_manifest(config, cells, skipped, overrides, budget, executor)
    write_json_atomic(run_dir / MANIFEST_FILE, manifest)
    # After the manifest: until it exists, the directory must hold nothing but the lock and
    # an empty records/ (see gradprobe.bench.store.run_dir.check_is_run_dir).
    write_text_atomic(run_dir / "config.toml", config.text)
    return manifest, finished_cells(run_dir, cells)


def _run_and_record(cells, done, run_dir, manifest, budget, progress, executor,
                    stop: StopFlag) -> float:
    """Run the missing cells; the manifest ends ``complete``, or ``interrupted`` on error
    or on a stop signal (even one whose exception something swallowed, see
    :mod:`gradprobe.bench.execute.stop_signals`)."""
    started = time.perf_counter()
    try:
        _execute(cells, done, run_dir, manifest, budget, progress, executor, stop)
        stop.check()
    except BaseException:
        manifest.update(status="interrupted", finished_at=utc_now())
        # On a full disk this write fails too; the original error is the one to report, and
        # readers see the run as interrupted anyway (its lock is free, see read_manifest).
        with contextlib.suppress(UserError):
            write_json_atomic(run_dir / MANIFEST_FILE, manifest)
        raise
    seconds = time.perf_counter() - started
    devices = list(dict.fromkeys(c.device for c in cells))
    timings = collect_timings(run_dir, cells)
    manifest.update(finished_at=utc_now(), status="complete",
                    wall_seconds=round(seconds, 3), timings=timings,
                    batching={c: t["batching"] for c, t in timings.items() if "batching" in t},
                    peak_memory=peak_memory(devices))
    write_json_atomic(run_dir / MANIFEST_FILE, manifest)
    return seconds


def _execute(cells, done, run_dir, manifest, budget, progress, executor: Executor,
             stop: StopFlag) -> None:
    for device in dict.fromkeys(c.device for c in cells):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(torch.device(device))
    finished = {c.cell_id for c in done}
    groups = [g for g in group_cells(cells) if any(c.cell_id not in finished for c in g)]
    bar = SweepProgress(cells, done, enabled=progress)
    embedded = record_manifest(manifest)
    try:
        if executor.run_all is None:
            for group in groups:
                stop.check()
                run_group(group, run_dir, embedded, max_memory=budget,
                          on_progress=bar.update_counts)
            return

        def task_done(group: list[Cell]) -> None:
            bar.task_done(group)
            stop.check()

        payloads = [task_payload([c for c in g if c.cell_id not in finished], run_dir,
                                 embedded, budget) for g in groups]
        executor.run_all(payloads, groups, task_done)
    finally:
        bar.close()
