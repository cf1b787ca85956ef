"""Run a sweep into a run directory: plan, lock, tasks, records, manifest.

Cells that share their initial state (same seeds, architecture and input; see
``gradprobe.bench.plan.sweep.INIT_KEYS``) form a group: each chunk of seeds is drawn once and
measured under every cell of the group, so plain and residual cells see the very same
weights. Every cell's records are written atomically under a name that is the cell's content
hash; cells whose file exists are skipped, so running the same command again after a crash,
a SIGKILL or a Ctrl-C finishes the sweep with exactly the records of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from gradprobe.bench.engine.batched import DEFAULT_MAX_MEMORY
from gradprobe.bench.engine.cpu_policy import current_policy
from gradprobe.bench.execute.executors import Executor, open_executor
from gradprobe.bench.execute.memory_guard import check_memory, split_by_held_bytes
from gradprobe.bench.execute.preflight import check_factories
from gradprobe.bench.execute.progress import SweepProgress
from gradprobe.bench.execute.stop_signals import StopFlag, catch_stop_signals
from gradprobe.bench.execute.tasks import run_group, run_task, task_payload
from gradprobe.bench.plan.devices import device_available
from gradprobe.bench.plan.sweep import Cell, ExperimentConfig
from gradprobe.bench.store.manifest import MANIFEST_FILE, new_manifest, read_manifest, utc_now
from gradprobe.bench.store.records import record_manifest
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
from gradprobe.core.atomic_files import write_json_atomic, write_text_atomic
from gradprobe.core.errors import ConfigError, UserError

__all__ = ["RunResult", "check_devices", "default_run_dir", "plan_cells", "run_sweep"]


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    cells_run: int
    cells_skipped: int
    rows: int  # in the run directory once done, resumed cells included
    rows_new: int  # written by this invocation
    seconds: float


def plan_cells(config: ExperimentConfig, *, budget: int | None = None
               ) -> tuple[list[Cell], list[dict[str, Any]]]:
    """The cells to run here and the skipped ones.

    A device this machine lacks is an error naming the config, unless the config says
    ``on_missing_device = "skip"``: then its cells are skipped and each skip is returned as
    ``{"device", "reason", "cells"}`` for the manifest and the report. The cells must fit
    ``budget`` bytes (default the config's) and their devices
    (:func:`gradprobe.bench.execute.memory_guard.check_memory`); then every ``[model]
    factory`` is imported and tried, so a bad one fails before anything is written
    (:func:`gradprobe.bench.execute.preflight.check_factories`). Memory comes first: trying
    a factory builds its model for real, and one too big for the machine would be
    OOM-killed right there.
    """
    cells, skipped = _available(config)
    check_memory(cells, budget or config.sweep.max_memory or DEFAULT_MAX_MEMORY,
                 config.source)
    try:
        check_factories(cells)
    except ConfigError as err:
        err.source = config.source
        raise
    return cells, skipped


def _available(config: ExperimentConfig) -> tuple[list[Cell], list[dict[str, Any]]]:
    """The config's cells on devices this machine has, and the skips (see plan_cells)."""
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


def group_cells(cells: list[Cell], budget: int | None = None) -> list[list[Cell]]:
    """Cells grouped by initial state, groups in order of first appearance; with ``budget``,
    a group whose results would hold more than ``budget`` bytes until written is cut into
    parts that do not (:func:`gradprobe.bench.execute.memory_guard.split_by_held_bytes`)."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.init_key, []).append(cell)
    if budget is None:
        return list(groups.values())
    return [part for group in groups.values() for part in split_by_held_bytes(group, budget)]


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
                              "executor": executor.name,
                              "cpu": current_policy().manifest_entry()})
    return manifest


@dataclass(frozen=True)
class Invocation:
    """One call of :func:`run_sweep` once its directory is claimed: the planned ``cells``,
    those already ``done``, where they go, the ``manifest`` being written (a dict the run
    updates), the memory ``budget`` per chunk, the started ``executor`` and the ``stop``
    flag of the signal handlers."""

    cells: list[Cell]
    done: list[Cell]
    run_dir: Path
    manifest: dict[str, Any]
    budget: int
    progress: bool
    executor: Executor
    stop: StopFlag


def run_sweep(config: ExperimentConfig, *, out: Path | None = None, force: bool = False,
              max_memory: int | None = None, progress: bool = True,
              overrides: dict[str, Any] | None = None, executor: str = "local",
              workers: int | None = None, scheduler: str | None = None,
              on_start: Callable[[Path, int, int], None] | None = None) -> RunResult:
    """Run every cell of ``config`` into ``out`` (default :func:`default_run_dir`).

    ``max_memory`` (bytes per chunk) overrides the config's ``[sweep] max_memory``; a
    resumed run keeps the budget it started with (:func:`resume_budget`);
    ``executor`` is ``local``, ``processes`` (``workers``) or ``dask`` (``scheduler``).
    ``on_start(run_dir, cells, cells_done)`` is called once every check has passed."""
    budget = max_memory or config.sweep.max_memory or DEFAULT_MAX_MEMORY
    cells, skipped = plan_cells(config, budget=budget)  # before the directory: nothing written
    run_dir = Path(out) if out is not None else default_run_dir(config)
    # The executor starts first: a scheduler that cannot be reached must not leave a
    # half-made run directory behind.
    with open_executor(executor, workers, scheduler) as started:
        create_run_dir(run_dir)
        with run_lock(run_dir), catch_stop_signals() as stop:
            manifest, done = _prepare(config, run_dir, cells, skipped, force=force,
                                      overrides=overrides, budget=budget,
                                      explicit_budget=max_memory is not None,
                                      executor=started)
            budget = manifest["settings"]["max_memory"]
            if on_start:
                on_start(run_dir, len(cells), len(done))
            seconds = _run_and_record(Invocation(cells, done, run_dir, manifest, budget,
                                                 progress, started, stop))
    rows = count_rows(run_dir, cells)
    return RunResult(run_dir, len(cells) - len(done), len(done), rows,
                     rows - count_rows(run_dir, done), seconds)


def resume_budget(run_dir: Path, budget: int, *, explicit: bool, force: bool) -> int:
    """The memory budget to run with: a resumed run keeps the one its manifest records.

    Chunk sizes follow from the budget, and a seed's float rounding can depend on its chunk
    (a one-seed chunk was seen 1.7e-7 relative off a 12-seed one in float32, in some
    processes; docs/records.md), so cells run under two budgets could mix two roundings.
    Without ``--max-memory`` the recorded budget is used; an ``explicit`` other one is
    refused unless ``force`` redoes every cell."""
    if force or not (run_dir / MANIFEST_FILE).exists():
        return budget
    recorded = read_manifest(run_dir).settings.get("max_memory")
    if not isinstance(recorded, int) or recorded == budget:
        return budget
    if explicit:
        raise UserError(f"{run_dir}: was run with --max-memory {recorded} (bytes), and "
                        "chunk sizes change a seed's rounding; resume with --max-memory "
                        f"{recorded} or without --max-memory, or pass --force to redo it "
                        "all with the new budget")
    return recorded


def _prepare(config, run_dir, cells, skipped, *, force, overrides, budget, explicit_budget,
             executor: Executor) -> tuple[dict[str, Any], list[Cell]]:
    """Claim the directory (under the lock), write the manifest, find the finished cells."""
    claim_run_dir(run_dir, cells, force)
    for folder in RECORD_FOLDERS:
        remove_stale_temporaries(run_dir / folder)
    apply_numerics(config)
    budget = resume_budget(run_dir, budget, explicit=explicit_budget, force=force)
    check_memory(cells, budget, config.source)  # the recorded budget may be another
    manifest = _start_manifest(config, cells, skipped, overrides, budget, executor)
    write_json_atomic(run_dir / MANIFEST_FILE, manifest)
    # After the manifest: until it exists, the directory must hold nothing but the lock and
    # an empty records/ (see gradprobe.bench.store.run_dir.check_is_run_dir).
    write_text_atomic(run_dir / "config.toml", config.text)
    return manifest, finished_cells(run_dir, cells)


def _run_and_record(run: Invocation) -> float:
    """Run the missing cells; the manifest ends ``complete``, or ``interrupted`` on error
    or on a stop signal (even one whose exception something swallowed, see
    :mod:`gradprobe.bench.execute.stop_signals`)."""
    started = time.perf_counter()
    manifest = run.manifest
    try:
        _execute(run)
        run.stop.check()
    except BaseException:
        manifest.update(status="interrupted", finished_at=utc_now())
        # On a full disk this write fails too; the original error is the one to report, and
        # readers see the run as interrupted anyway (its lock is free, see read_manifest).
        with contextlib.suppress(UserError):
            write_json_atomic(run.run_dir / MANIFEST_FILE, manifest)
        raise
    seconds = time.perf_counter() - started
    devices = list(dict.fromkeys(c.device for c in run.cells))
    timings = collect_timings(run.run_dir, run.cells)
    manifest.update(finished_at=utc_now(), status="complete",
                    wall_seconds=round(seconds, 3), timings=timings,
                    batching={c: t["batching"] for c, t in timings.items() if "batching" in t},
                    peak_memory=peak_memory(devices))
    write_json_atomic(run.run_dir / MANIFEST_FILE, manifest)
    return seconds


def _progress_then_check(bar: SweepProgress, stop: StopFlag, seeds: int, cells: int) -> None:
    """After each chunk or cell: count it, then stop if a signal arrived that could not be
    raised where it landed (inside a kernel loader, see stop_signals)."""
    bar.update_counts(seeds, cells)
    stop.check()


def _execute(run: Invocation) -> None:
    for device in dict.fromkeys(c.device for c in run.cells):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(torch.device(device))
    finished = {c.cell_id for c in run.done}
    groups = [g for g in group_cells(run.cells, run.budget)
              if any(c.cell_id not in finished for c in g)]
    bar = SweepProgress(run.cells, run.done, enabled=run.progress)
    embedded = record_manifest(run.manifest)
    try:
        if run.executor.map_tasks is None:
            for group in groups:
                run.stop.check()
                run_group(group, run.run_dir, embedded, max_memory=run.budget,
                          on_progress=partial(_progress_then_check, bar, run.stop))
            return

        def task_done(index: int, timings) -> None:
            bar.task_done(groups[index])
            run.stop.check()

        payloads = [task_payload([c for c in g if c.cell_id not in finished], run.run_dir,
                                 embedded, run.budget) for g in groups]
        run.executor.map_tasks(run_task, payloads, task_done)
    finally:
        bar.close()
