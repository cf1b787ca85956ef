"""Where the work runs: in this process, in worker processes, or on a Dask cluster.

A *task* is one group of cells that share their initial draw (usually a plain/residual pair;
see :func:`gradprobe.bench.execute.runner.group_cells`), so the draw is made once per task and the
pair stays
paired seed by seed. Each task writes its cells' record files itself, atomically; the driver
only collects timings and writes the manifest. Task payloads are plain JSON-able dicts
(cells as :meth:`gradprobe.bench.plan.sweep.Cell.to_json`), so nothing but configuration crosses
process or
machine boundaries, and a record is the same whichever executor produced it.

``dask``: ``--scheduler ADDRESS`` connects to a running cluster (deployed e.g. with
dask-jobqueue on Slurm/PBS, or on Kubernetes); its workers must see the run directory on a
shared filesystem. Without an address a ``dask.distributed.LocalCluster`` is started.

:func:`open_executor` starts the pool, cluster or connection *before* the run directory is
touched, so an executor that cannot start leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from gradprobe.bench.engine.cpu_policy import available_cpus
from gradprobe.bench.execute.tasks import Timings, run_task
from gradprobe.bench.plan.sweep import Cell
from gradprobe.core.errors import UserError

EXECUTORS = ("local", "processes", "dask")
# A scheduler that answers at all answers within a second or two; waiting longer only delays
# the error for a wrong address.
DASK_CONNECT_TIMEOUT = "10s"
PARENT_POLL_SECONDS = 0.5

OnDone = Callable[[list[Cell]], None]  # called with a finished task's cells
RunAll = Callable[[list[dict[str, Any]], list[list[Cell]], OnDone], Timings]


@dataclass(frozen=True)
class Executor:
    """A started executor. ``run_all`` is None for ``local`` (the runner runs the groups)."""

    name: str
    workers: int | None
    scheduler: str | None
    run_all: RunAll | None = None

    def manifest_entry(self) -> dict[str, Any]:
        return {"name": self.name, "workers": self.workers, "scheduler": self.scheduler}


def check_options(executor: str, workers: int | None, scheduler: str | None) -> None:
    """Refuse options that would hang, crash, or be silently ignored."""
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor}: must be one of {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: must be >= 1; leave it out for one worker "
                        "per core")
    if scheduler is not None and executor != "dask":
        raise UserError(f"--scheduler {scheduler}: only used with --executor dask; add "
                        "--executor dask, or drop --scheduler")
    if workers is not None and executor == "local":
        raise UserError(f"--workers {workers}: only used with --executor processes or "
                        "dask; add one of them, or drop --workers")
    if workers is not None and scheduler is not None:
        raise UserError(f"--workers {workers}: the cluster at --scheduler {scheduler} "
                        "decides its workers; drop --workers")


@contextlib.contextmanager
def open_executor(executor: str, workers: int | None,
                  scheduler: str | None) -> Iterator[Executor]:
    """Check the options and start the executor; shut it down on leaving."""
    check_options(executor, workers, scheduler)
    count = workers or available_cpus()
    if executor == "local":
        yield Executor("local", None, None)
    elif executor == "processes":
        with _process_pool(count) as run_all:
            yield Executor("processes", count, None, run_all)
    else:
        with _dask_client(count, scheduler) as run_all:
            yield Executor("dask", None if scheduler else count, scheduler, run_all)


def _threads_per_worker(workers: int) -> int:
    # Without this each worker's torch would start one thread per core: workers x cores
    # threads fighting over the same cores.
    return max(1, available_cpus() // workers)


def _collect(futures: Iterable, by_future: dict, on_done: OnDone, result) -> Timings:
    timings: Timings = {}
    for future in futures:
        timings.update(result(future))
        on_done(by_future[future])
    return timings


def exit_with_parent(parent_pid: int) -> None:
    """Pool initializer: end this worker when the driver dies.

    A driver killed by SIGKILL cannot shut its pool down, and idle workers would wait for
    tasks forever. An orphan is re-parented, so a changed ``getppid()`` means the driver is
    gone (polling works on every POSIX system, unlike Linux's PR_SET_PDEATHSIG)."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)  # no cleanup: the driver that would collect anything is gone

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@contextlib.contextmanager
def _process_pool(workers: int) -> Iterator[RunAll]:
    # "spawn": forking a process that already runs OpenMP threads can deadlock.
    context = multiprocessing.get_context("spawn")
    threads = _threads_per_worker(workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        def run_all(payloads, groups, on_done: OnDone) -> Timings:
            by_future = {pool.submit(run_task, p, threads): g
                         for p, g in zip(payloads, groups, strict=True)}
            try:
                return _collect(as_completed(by_future), by_future, on_done,
                                lambda f: f.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

        yield run_all


def _connect_dask(workers: int, scheduler: str | None):
    """``(client, cluster or None)``; a one-line UserError when that fails."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UserError("--executor dask needs dask.distributed: "
                        "pip install 'dask[distributed]'") from None
    if not scheduler:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=DASK_CONNECT_TIMEOUT), None
    except (OSError, ValueError) as err:  # ValueError: an address without a port
        raise UserError(f"--scheduler {scheduler}: cannot connect to the Dask scheduler "
                        f"({err}); check the address and that the scheduler runs") from None


@contextlib.contextmanager
def _dask_client(workers: int, scheduler: str | None) -> Iterator[RunAll]:
    client, cluster = _connect_dask(workers, scheduler)
    from dask.distributed import as_completed as dask_completed

    threads = _threads_per_worker(workers) if cluster else None

    def run_all(payloads, groups, on_done: OnDone) -> Timings:
        by_future = {client.submit(run_task, p, threads, pure=False): g
                     for p, g in zip(payloads, groups, strict=True)}
        return _collect(dask_completed(by_future), by_future, on_done, lambda f: f.result())

    try:
        yield run_all
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
