"""Records are identical whichever executor ran them; an executor never outlives its run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from support import SMOKE, write_config
from test_resume import SLOW, wait_for_cells

from gradprobe.bench.execute.runner import run_sweep
from gradprobe.bench.plan.loader import load_config


def records(run_dir) -> pd.DataFrame:
    frame = pd.read_parquet(run_dir / "records")
    return frame.sort_values(["cell_id", "seed", "param"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_records(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("local") / "run"
    run_sweep(load_config(SMOKE), out=run_dir, progress=False)
    return records(run_dir)


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_executor_records_identical_to_local(tmp_path, local_records, executor):
    run_dir = tmp_path / "run"
    result = run_sweep(load_config(SMOKE), out=run_dir, progress=False, executor=executor,
                       workers=2)
    assert result.cells_run == 12
    pd.testing.assert_frame_equal(records(run_dir), local_records)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["settings"]["executor"] == executor
    assert manifest["executor"] == {"name": executor, "workers": 2, "scheduler": None}
    assert manifest["status"] == "complete" and len(manifest["timings"]) == 12


def test_manifest_records_the_executor(tmp_path):
    """Bug: the manifest recorded neither the executor, --workers nor --scheduler."""
    run_dir = tmp_path / "run"
    run_sweep(load_config(SMOKE), out=run_dir, progress=False, executor="processes",
              workers=1)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["executor"] == {"name": "processes", "workers": 1, "scheduler": None}
    run_sweep(load_config(SMOKE), out=tmp_path / "local", progress=False)
    manifest = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert manifest["executor"] == {"name": "local", "workers": None, "scheduler": None}


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (psutil when installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        found, frontier = [], [pid]
        while frontier:
            kids = [p for p, parent in parents.items() if parent in frontier]
            found += kids
            frontier = kids
        return found
    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _alive(pid: int) -> bool:
    """Running, and not a zombie (an orphan may wait a while to be reaped in a container)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_workers_exit_when_the_driver_is_killed(tmp_path):
    """Bug: after `kill -9` of a `--executor processes` driver, its pool's workers (and the
    resource tracker) stayed alive and idle forever."""
    config = write_config(tmp_path, SLOW, "slow.toml")
    out = tmp_path / "run"
    driver = subprocess.Popen([sys.executable, "-m", "gradprobe", "run", str(config), "--out",
                               str(out), "--no-progress", "--executor", "processes",
                               "--workers", "2"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for_cells(out, 1, driver)
        children = _children(driver.pid)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    assert driver.returncode == -signal.SIGKILL and len(children) >= 2
    deadline = time.monotonic() + 20
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in children if _alive(p)]
    for pid in left:  # do not leave them running after a failure either
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes {left} outlived the killed driver"
