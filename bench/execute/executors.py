"""Where the work runs: in this process, in worker processes, or on a Dask cluster.

An executor maps a module-level function over task payloads: ``fn(payload, threads)`` in
whichever process runs it, each result handed back to the driver as it arrives
(:attr:`Executor.map_tasks`). The sweep's task is one group of cells that share their
initial draw (usually a plain/residual pair; see
:func:`gradprobe.bench.execute.runner.group_cells`), so the draw is made once per task and the
pair stays paired seed by seed; each task writes its cells' record files itself, atomically,
and the driver only collects timings and writes the manifest. The analysis maps its per-cell
work over the same executors (:mod:`gradprobe.analysis.analyze`). Payloads are plain
JSON-able dicts (cells as :meth:`gradprobe.bench.plan.sweep.Cell.to_json`), so nothing but
configuration crosses process or machine boundaries, and a result is the same whichever
executor produced it.

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
from gradprobe.core.errors import UserError

EXECUTORS = ("local", "processes", "dask")
# A scheduler that answers at all answers within a second or two; waiting longer only delays
# the error for a wrong address.
DASK_CONNECT_TIMEOUT = "10s"
PARENT_POLL_SECONDS = 0.5

TaskFunction = Callable[[dict[str, Any], int | None], Any]  # (payload, threads) -> result
OnResult = Callable[[int, Any], None]  # (index of the payload, its task's result)
MapTasks = Callable[[TaskFunction, list[dict[str, Any]], OnResult], None]


@dataclass(frozen=True)
class Executor:
    """A started executor. ``map_tasks(fn, payloads, on_result)`` runs ``fn(payload,
    threads)`` for every payload elsewhere and calls ``on_result(index, result)`` in the
    driver as each finishes (in completion order); None for ``local``, whose caller runs the
    tasks itself (with progress and stop checks between them)."""

    name: str
    workers: int | None
    scheduler: str | None
    map_tasks: MapTasks | None = None

    def map_in_order(self, fn: TaskFunction, payloads: list[dict[str, Any]],
                     on_result: OnResult | None = None) -> list[Any]:
        """Results of ``fn`` over ``payloads``, in payload order, whichever executor runs
        them (``local``: one after another in this process)."""
        results: list[Any] = [None] * len(payloads)

        def keep(index: int, result: Any) -> None:
            results[index] = result
            if on_result is not None:
                on_result(index, result)

        if self.map_tasks is None:
            for index, payload in enumerate(payloads):
                keep(index, fn(payload, None))
        else:
            self.map_tasks(fn, payloads, keep)
        return results

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
        with _process_pool(count) as map_tasks:
            yield Executor("processes", count, None, map_tasks)
    else:
        with _dask_client(count, scheduler) as map_tasks:
            yield Executor("dask", None if scheduler else count, scheduler, map_tasks)


def _threads_per_worker(workers: int) -> int:
    # Without this each worker's torch would start one thread per core: workers x cores
    # threads fighting over the same cores.
    return max(1, available_cpus() // workers)


def _collect(futures: Iterable, by_future: dict, on_result: OnResult) -> None:
    for future in futures:
        on_result(by_future[future], future.result())


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
def _process_pool(workers: int) -> Iterator[MapTasks]:
    # "spawn": forking a process that already runs OpenMP threads can deadlock.
    context = multiprocessing.get_context("spawn")
    threads = _threads_per_worker(workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        def map_tasks(fn: TaskFunction, payloads, on_result: OnResult) -> None:
            by_future = {pool.submit(fn, p, threads): i for i, p in enumerate(payloads)}
            try:
                _collect(as_completed(by_future), by_future, on_result)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

        yield map_tasks


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
def _dask_client(workers: int, scheduler: str | None) -> Iterator[MapTasks]:
    client, cluster = _connect_dask(workers, scheduler)
    from dask.distributed import as_completed as dask_completed

    threads = _threads_per_worker(workers) if cluster else None

    def map_tasks(fn: TaskFunction, payloads, on_result: OnResult) -> None:
        by_future = {client.submit(fn, p, threads, pure=False): i
                     for i, p in enumerate(payloads)}
        _collect(dask_completed(by_future), by_future, on_result)

    try:
        yield map_tasks
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
