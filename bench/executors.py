"""Where the work runs: in this process, in worker processes, or on a Dask cluster.

A *task* is one group of cells that share their initial draw (usually a plain/residual pair;
see :func:`bench.runner.group_cells`), so the draw is made once per task and the pair stays
paired seed by seed. Each task writes its cells' record files itself, atomically; the driver
only collects timings and writes the manifest. Task payloads are plain JSON-able dicts
(cells as :meth:`bench.sweep.Cell.to_json`), so nothing but configuration crosses process or
machine boundaries, and a record is the same whichever executor produced it.

``dask``: ``--scheduler ADDRESS`` connects to a running cluster (deployed e.g. with
dask-jobqueue on Slurm/PBS, or on Kubernetes); its workers must see the run directory on a
shared filesystem. Without an address a ``dask.distributed.LocalCluster`` is started.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.sweep import Cell

EXECUTORS = ("local", "processes", "dask")
Timings = dict[str, dict[str, float]]
OnDone = Callable[[list[Cell]], None]  # called with a finished task's cells


def task_payload(group: list[Cell], run_dir: Path, manifest: dict[str, Any],
                 max_memory: int) -> dict[str, Any]:
    return {"run_dir": str(run_dir), "cells": [c.to_json() for c in group],
            "manifest": manifest, "max_memory": max_memory}


def run_task(payload: dict[str, Any], threads: int | None = None) -> Timings:
    """Run one task (in any process): rebuild the cells, measure, write their records."""
    import torch

    from bench.runner import run_group

    if threads:
        torch.set_num_threads(threads)
    cells = [Cell.from_json(c) for c in payload["cells"]]
    return run_group(cells, Path(payload["run_dir"]), payload["manifest"],
                     max_memory=payload["max_memory"])


def run_tasks(payloads: list[dict[str, Any]], groups: list[list[Cell]], *, executor: str,
              workers: int | None, scheduler: str | None, on_done: OnDone) -> Timings:
    """Run every task on ``executor``; return the timings of the cells that ran."""
    if executor == "processes":
        return _run_processes(payloads, groups, workers or os.cpu_count() or 1, on_done)
    if executor == "dask":
        return _run_dask(payloads, groups, workers or os.cpu_count() or 1, scheduler, on_done)
    raise UserError(f"--executor {executor}: must be one of {', '.join(EXECUTORS)}")


def _threads_per_worker(workers: int) -> int:
    # Without this each worker's torch would start one thread per core: workers x cores
    # threads fighting over the same cores.
    return max(1, (os.cpu_count() or 1) // workers)


def _collect(futures: Iterable, by_future: dict, on_done: OnDone, result) -> Timings:
    timings: Timings = {}
    for future in futures:
        timings.update(result(future))
        on_done(by_future[future])
    return timings


def _run_processes(payloads, groups, workers: int, on_done: OnDone) -> Timings:
    # "spawn": forking a process that already runs OpenMP threads can deadlock.
    context = multiprocessing.get_context("spawn")
    threads = _threads_per_worker(workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        by_future = {pool.submit(run_task, p, threads): g
                     for p, g in zip(payloads, groups, strict=True)}
        try:
            return _collect(as_completed(by_future), by_future, on_done, lambda f: f.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _run_dask(payloads, groups, workers: int, scheduler: str | None, on_done: OnDone) -> Timings:
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise UserError("--executor dask needs dask.distributed: "
                        "pip install 'dask[distributed]'") from None
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="30s")
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
    except OSError as err:
        raise UserError(f"--scheduler {scheduler}: cannot connect to the Dask scheduler "
                        f"({err})") from None
    threads = _threads_per_worker(workers) if cluster else None
    try:
        by_future = {client.submit(run_task, p, threads, pure=False): g
                     for p, g in zip(payloads, groups, strict=True)}
        return _collect(dask_completed(by_future), by_future, on_done, lambda f: f.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
