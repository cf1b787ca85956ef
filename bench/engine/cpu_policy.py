"""How the engine uses the host's CPUs: how many threads, how idle threads wait, and how
freed memory is kept. A policy for the machine the sweep really has, recorded in the manifest.

* CPUs: what this process may use, the smaller of its affinity mask (``sched_getaffinity``:
  taskset, cpusets, Slurm) and its cgroup CPU quota rounded up (cgroup v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us``: ``docker --cpus``, Kubernetes limits). ``os.cpu_count()`` counts the
  host's cores, which a container or a CI runner does not own.
* Threads per cell: a cell with narrow layers runs single-threaded: its per-layer batched
  matmul is a few microseconds of work, less than a fork-join of the intra-op pool. A wide
  cell gets the CPUs that are idle, judged from the CPU time other processes took since the
  last group (``/proc/stat``; the 1-minute load average where there is none, or for the
  first group): beside another
  busy process a pool's barrier waits for its slowest thread, which the scheduler may have
  parked behind that process for a whole time slice, so two threads on two shared cores run
  slower than one (measured: 2-15x slower per seed at (20, 64), docs/performance.md).
* Waiting: OpenMP threads spin after a parallel region before they sleep, which beside
  another spinning process takes CPU from both. The harness sets ``OMP_WAIT_POLICY=PASSIVE``
  before torch loads (:mod:`gradprobe.bench`), unless the user set it.
* Freed memory: glibc returns large freed blocks to the kernel (``mmap``/trim thresholds), so
  every chunk's fresh tensors page-fault again; keeping them (``mallopt``) halved the engine's
  CPU time per seed at (20, 64) and (50, 256). Memory stays bounded by ``max_memory``.

Thread counts can change the last bits of parallel reductions, hence the manifest entry.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

# From this width on, a layer's batched matmul is worth a thread pool (2-core machine: width
# 64 ran faster on one thread, width 256 on two when the machine was idle).
MIN_THREADED_WIDTH = 128
CGROUP_ROOT = Path("/sys/fs/cgroup")
# glibc mallopt parameters (malloc.h) and the values set: the largest mmap threshold glibc
# accepts on 64-bit (32 MiB), and no trimming below 1 GiB of free heap.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 1 << 30


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroup_dirs(root: Path) -> list[Path]:
    """This process's cgroup v2 directory and its parents up to ``root`` (any may limit)."""
    text = _read(Path("/proc/self/cgroup")) or ""
    path = next((line.split(":", 2)[2] for line in text.splitlines()
                 if line.startswith("0::")), "/")
    own = root / path.lstrip("/")
    return [own, *[p for p in own.parents if p.is_relative_to(root)]]


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup quota allows per period (None: no quota)."""
    quotas = []
    for folder in _own_cgroup_dirs(root):
        fields = (_read(folder / "cpu.max") or "max").split()
        if fields[0] != "max" and len(fields) == 2:
            quotas.append(int(fields[0]) / int(fields[1]))
    v1_quota = _read(root / "cpu" / "cpu.cfs_quota_us")
    v1_period = _read(root / "cpu" / "cpu.cfs_period_us")
    if v1_quota and v1_period and int(v1_quota) > 0:
        quotas.append(int(v1_quota) / int(v1_period))
    return min(quotas) if quotas else None


def available_cpus() -> int:
    """CPUs this process can use: affinity mask, capped by the cgroup quota (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def idle_cpus(cpus: int, own: float = 1.0) -> int:
    """Of ``cpus``, how many are idle: the host's 1-minute load average less ``own``, the
    threads this process itself keeps busy, as a share of the host's cores (at least 1)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cpus
    busy_share = max(0.0, load - own) / (os.cpu_count() or 1)
    return max(1, min(cpus, math.floor(cpus * (1.0 - busy_share) + 0.5)))


@dataclass
class _Clock:
    wall: float
    cpu: float
    host_busy: float | None = None  # seconds of CPU time the whole host spent busy


_last_judged = _Clock(time.monotonic(), time.process_time())
PROC_STAT = Path("/proc/stat")
# /proc/stat counts in clock ticks (10 ms): shorter windows say too little, and the last
# verdict stands for them.
MIN_WINDOW_SECONDS = 0.1


def host_busy_seconds(stat: Path = PROC_STAT) -> float | None:
    """CPU time the host has spent busy since boot, all CPUs together, from ``/proc/stat``'s
    first line (everything but idle and iowait; steal counts as busy: another VM has it);
    None where there is no ``/proc/stat``."""
    line = (_read(stat) or "").partition("\n")[0].split()
    if len(line) < 5 or line[0] != "cpu":
        return None
    ticks = [int(v) for v in line[1:9]]  # guest time is already inside user and nice
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class _HostWindow:
    start: _Clock | None = None
    others: float | None = None  # the last verdict: CPUs' worth other processes used


_host_window = _HostWindow()


def others_busy_cpus() -> float | None:
    """CPUs' worth of time other processes (and other VMs: steal) used since the last call,
    from ``/proc/stat`` less this process's own CPU time; the last value when less than
    :data:`MIN_WINDOW_SECONDS` passed, None on the first call or without ``/proc/stat``.

    Unlike the 1-minute load average, which rises over a minute, this sees a process that
    started a moment ago: judged by the load average, the first groups beside a freshly
    started torch process ran two intra-op threads and the (50, 256) benchmark lost 3x."""
    now = _Clock(time.monotonic(), time.process_time(), host_busy_seconds())
    start = _host_window.start
    if now.host_busy is None:
        return None
    if start is None or start.host_busy is None:
        _host_window.start = now
        return None
    elapsed = now.wall - start.wall
    if elapsed >= MIN_WINDOW_SECONDS:
        others = (now.host_busy - start.host_busy) - (now.cpu - start.cpu)
        _host_window.start, _host_window.others = now, max(0.0, others / elapsed)
    return _host_window.others


def threads_left(cpus: int, others: float) -> int:
    """Of ``cpus``, how many are left when other processes keep ``others`` CPUs' worth of
    the host's cores busy (at least 1)."""
    busy_share = others / (os.cpu_count() or 1)
    return max(1, min(cpus, math.floor(cpus * (1.0 - busy_share) + 0.5)))


def own_busy_threads() -> float:
    """CPUs' worth of time this process used since the policy was last judged (at least 1,
    the thread about to run). The load average counts this process's own threads too; a
    sweep that drew beside its pass, or ran two intra-op threads, would otherwise read its
    own work as another process's and turn them off for the next group."""
    now = _Clock(time.monotonic(), time.process_time())
    elapsed = now.wall - _last_judged.wall
    busy = (now.cpu - _last_judged.cpu) / elapsed if elapsed > 0 else 1.0
    _last_judged.wall, _last_judged.cpu = now.wall, now.cpu
    return max(1.0, busy)


def wait_policy() -> str:
    """The OpenMP wait policy of torch's threads (libgomp reads it when torch loads)."""
    return os.environ.get("OMP_WAIT_POLICY", "default (spin, then sleep)")


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of returning them to the kernel
    (once per process). False where that is not glibc, or it refused."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and \
            bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    except (OSError, AttributeError, TypeError):  # musl, macOS, Windows: no mallopt
        return False


@dataclass(frozen=True)
class CpuPolicy:
    """Intra-op threads per cell: one below ``min_threaded_width``, else ``threads`` (the
    CPUs available and idle when the sweep started)."""

    cpus: int
    threads: int
    min_threaded_width: int = MIN_THREADED_WIDTH

    def __post_init__(self) -> None:
        if not 1 <= self.threads <= self.cpus or self.min_threaded_width < 1:
            raise ValueError(f"CpuPolicy needs 1 <= threads <= cpus and min_threaded_width "
                             f">= 1, got threads={self.threads}, cpus={self.cpus}, "
                             f"min_threaded_width={self.min_threaded_width}")

    def threads_for(self, width: int) -> int:
        """Intra-op threads for a cell whose layers are ``width`` wide."""
        return self.threads if width >= self.min_threaded_width else 1

    def draws_beside(self, compute_threads: int) -> bool:
        """Whether the next chunk's initial state is drawn on a host thread of its own while
        ``compute_threads`` intra-op threads run the current one: when the process may use
        another CPU, idle or not. The generator releases the GIL and meets the pass once a
        chunk, unlike a second intra-op thread, which joins the pool's barrier at every
        operation: beside a busy process it takes its share of a CPU instead of stalling the
        pass (at (20, 64) beside the competing torch process of ``make perf-loaded``:
        245-276 ms a call, against 296-342 ms drawing in turn with the pass)."""
        return self.cpus > compute_threads

    def manifest_entry(self) -> dict:
        return {"cpus": self.cpus, "host_cpus": os.cpu_count(), "threads": self.threads,
                "min_threaded_width": self.min_threaded_width,
                "draw_beside_narrow_cells": self.draws_beside(1),
                "omp_wait_policy": wait_policy(), "keep_freed_memory": keep_freed_memory(),
                "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE", "0")}


def current_policy() -> CpuPolicy:
    """The policy for this process now, judged per group of cells (another process may have
    started or stopped since the last group) from what other processes used since the last
    judgement (:func:`others_busy_cpus`), or, on the first or without ``/proc/stat``, from
    the load average with this process's own busy threads left out
    (:func:`own_busy_threads`). ``torch.get_num_threads()`` caps it: a
    worker of ``--executor processes`` is given its share of the cores that way."""
    cpus = min(available_cpus(), torch.get_num_threads())
    own = own_busy_threads()
    others = others_busy_cpus()
    return CpuPolicy(cpus, idle_cpus(cpus, own) if others is None else threads_left(cpus, others))


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the setting."""
    before = torch.get_num_threads()
    if count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count != before:
            torch.set_num_threads(before)


@functools.cache
def kernel_pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``threads`` host threads for the compiled row kernels
    (statistics, histograms), which release the GIL: starting a pool per call cost ~0.1 ms,
    once per gradient."""
    return ThreadPoolExecutor(threads, thread_name_prefix="gradprobe-kernel")
