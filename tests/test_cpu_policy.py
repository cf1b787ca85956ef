"""The CPU policy: available CPUs, threads per cell, waiting, and its manifest record."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gradprobe.bench.engine import cpu_policy
from gradprobe.bench.engine.batched import measure_group
from gradprobe.bench.plan.config import DataConfig, ModelConfig
from gradprobe.bench.plan.sweep import Cell


def test_available_cpus_respects_affinity_not_the_host_count():
    cpus = cpu_policy.available_cpus()
    assert 1 <= cpus <= len(os.sched_getaffinity(0)) <= (os.cpu_count() or 1)


@pytest.mark.parametrize("content,expected", [("150000 100000", 1.5), ("max 100000", None)])
def test_cgroup_v2_quota_is_read(tmp_path, monkeypatch, content, expected):
    monkeypatch.setattr(cpu_policy, "_own_cgroup_dirs", lambda root: [root])
    (tmp_path / "cpu.max").write_text(content + "\n")
    assert cpu_policy.cgroup_cpu_quota(tmp_path) == expected


def test_cgroup_v1_quota_is_read_and_minus_one_means_none(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_policy, "_own_cgroup_dirs", lambda root: [root])
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("250000\n")
    assert cpu_policy.cgroup_cpu_quota(tmp_path) == 2.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_policy.cgroup_cpu_quota(tmp_path) is None


def test_quota_caps_the_cpus(monkeypatch):
    monkeypatch.setattr(cpu_policy, "cgroup_cpu_quota", lambda: 0.5)
    assert cpu_policy.available_cpus() == 1


@pytest.mark.parametrize("load,expected", [(1.0, 2), (0.2, 2), (2.0, 1), (3.0, 1)])
def test_idle_cpus_leave_out_what_other_processes_use(monkeypatch, load, expected):
    # On a 2-core host: our own runnable thread is load 1; one more busy process takes one.
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert cpu_policy.idle_cpus(2) == expected


def test_policy_runs_narrow_cells_single_threaded():
    policy = cpu_policy.CpuPolicy(cpus=4, threads=3)
    assert policy.threads_for(64) == 1
    assert policy.threads_for(256) == 3
    entry = policy.manifest_entry()
    assert entry["threads"] == 3 and entry["cpus"] == 4 and "omp_wait_policy" in entry
    assert entry["thp_mem_alloc"] == "1" and entry["draw_beside_narrow_cells"]


@pytest.mark.parametrize("kwargs", [{"cpus": 2, "threads": 3}, {"cpus": 2, "threads": 0},
                                    {"cpus": 2, "threads": 1, "min_threaded_width": 0}])
def test_policy_refuses_impossible_settings(kwargs):
    with pytest.raises(ValueError, match="CpuPolicy needs"):
        cpu_policy.CpuPolicy(**kwargs)


def test_measure_group_uses_and_restores_the_thread_count():
    before = torch.get_num_threads()
    cell = Cell(ModelConfig(depth=3, width=8), DataConfig(), "cpu", "float32", (0, 1, 2))
    result = measure_group([cell], policy=cpu_policy.CpuPolicy(cpus=2, threads=2))
    assert result[cell.cell_id].threads == 1  # narrow: single-threaded
    assert torch.get_num_threads() == before


def test_freed_memory_is_kept_on_glibc():
    if not os.path.exists("/proc/self/maps") or sys.platform != "linux":
        pytest.skip("glibc's mallopt is Linux-only here")
    assert cpu_policy.keep_freed_memory() is True


@pytest.mark.parametrize("preset,expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_harness_sets_a_passive_wait_policy_unless_the_user_chose(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import gradprobe.bench, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == expected


def test_the_next_chunk_is_drawn_beside_when_the_process_has_another_cpu():
    assert cpu_policy.CpuPolicy(cpus=2, threads=2).draws_beside(1)
    # Beside a busy process too: the draw joins no barrier, so it only takes a CPU share.
    assert cpu_policy.CpuPolicy(cpus=2, threads=1).draws_beside(1)
    assert not cpu_policy.CpuPolicy(cpus=2, threads=2).draws_beside(2)
    assert not cpu_policy.CpuPolicy(cpus=1, threads=1).draws_beside(1)


def test_drawing_beside_the_pass_changes_no_record():
    from gradprobe.bench.engine.batched import bytes_per_seed

    cell = Cell(ModelConfig(depth=4, width=16), DataConfig(), "cpu", "float32",
                tuple(range(40)))
    budget = 7 * bytes_per_seed(cell)  # several chunks, so a draw runs beside a pass
    beside = measure_group([cell], max_memory=budget,
                           policy=cpu_policy.CpuPolicy(cpus=2, threads=2))[cell.cell_id]
    serial = measure_group([cell], max_memory=budget,
                           policy=cpu_policy.CpuPolicy(cpus=2, threads=1))[cell.cell_id]
    assert np.array_equal(beside.seeds, serial.seeds)
    assert np.array_equal(beside.values, serial.values)
    assert list(beside.fingerprints) == list(serial.fingerprints)


def test_own_threads_are_not_counted_as_another_process(monkeypatch):
    # Regression: a sweep that drew beside its pass added ~2 to the load average, read that
    # as a competing process, and turned the draw beside off for its next group.
    monkeypatch.setattr(os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert cpu_policy.idle_cpus(2) == 1
    assert cpu_policy.idle_cpus(2, own=2.0) == 2


def test_own_busy_threads_measures_this_process():
    cpu_policy.own_busy_threads()
    sum(i * i for i in range(300_000))  # one busy thread
    assert 1.0 <= cpu_policy.own_busy_threads() <= cpu_policy.available_cpus() + 0.5


def test_records_do_not_depend_on_the_threads_or_the_load(tmp_path):
    """Bug (CI): whether the next chunk was drawn beside the pass (an idle CPU: the load and
    torch's thread setting) also cut the cell into other chunks, and a seed's rounding follows
    its chunk's batch count: an in-process run and a subprocess run of one config differed
    by 1.6e-5 in grad_mean_abs. Chunks are now cut the same way either way."""
    import torch
    from support import run_text

    from gradprobe.bench.store.records import read_records

    text = ('name = "threads"\n[model]\nbias = true\n[sweep]\nseeds = 320\n'
            "depth = [10]\nwidth = [96]\nresidual = [true]\n")
    before = torch.get_num_threads()
    frames = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            run = run_text(tmp_path / f"t{threads}", text)
            frames.append(read_records(run).sort_values(["seed", "param"]).reset_index(drop=True))
    finally:
        torch.set_num_threads(before)
    for metric in ("grad_mean_abs", "grad_l2", "act_rms"):
        assert frames[0][metric].equals(frames[1][metric]), metric


def test_host_busy_time_is_read_from_proc_stat(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    stat.write_text("cpu  100 20 30 500 40 1 2 7 50 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    monkeypatch.setattr(os, "sysconf", lambda name: 100)
    assert cpu_policy.host_busy_seconds(stat) == pytest.approx((100 + 20 + 30 + 1 + 2 + 7) / 100)
    stat.write_text("intr 1 2 3\n")
    assert cpu_policy.host_busy_seconds(stat) is None
    assert cpu_policy.host_busy_seconds(tmp_path / "missing") is None


@pytest.mark.parametrize("others,expected", [(0.0, 2), (0.4, 2), (1.0, 1), (1.6, 1), (2.0, 1)])
def test_threads_left_beside_other_processes(monkeypatch, others, expected):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert cpu_policy.threads_left(2, others) == expected


def test_a_process_that_just_started_is_seen_before_the_load_average_rises(monkeypatch):
    """Bug (make perf-loaded): the 1-minute load average still read ~0.9 while a competing
    torch process had started, so the first groups ran two intra-op threads against it and
    the (50, 256) engine lost 3x. The CPU time other processes took since the last
    judgement (/proc/stat) sees it at once."""
    clock = {"wall": 100.0, "own": 10.0, "host": 1000.0}
    monkeypatch.setattr(cpu_policy.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(cpu_policy.time, "process_time", lambda: clock["own"])
    monkeypatch.setattr(cpu_policy, "host_busy_seconds", lambda stat=None: clock["host"])
    monkeypatch.setattr(cpu_policy, "_host_window", cpu_policy._HostWindow())
    monkeypatch.setattr(os, "getloadavg", lambda: (0.9, 0.9, 0.9))  # stale: nobody else yet
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(cpu_policy, "available_cpus", lambda: 2)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert cpu_policy.current_policy().threads == 2  # first judgement: the load average
    # 0.5 s later: this process used 0.5 s of CPU, the host 1.5 s: another took 2 CPUs' worth
    clock.update(wall=100.5, own=10.5, host=1001.5)
    assert cpu_policy.others_busy_cpus() == pytest.approx(2.0)
    clock.update(wall=101.0, own=11.0, host=1002.5)  # 1 CPU's worth elsewhere
    assert cpu_policy.current_policy().threads == 1
    clock.update(wall=101.05, own=11.05, host=1003.1)  # too short a window: verdict stands
    assert cpu_policy.current_policy().threads == 1
    clock.update(wall=102.0, own=12.0, host=1004.0)  # the other process stopped
    assert cpu_policy.current_policy().threads == 2
