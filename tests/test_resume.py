"""Interrupted runs resume to exactly the records of an uninterrupted run.

These tests start real ``gradprobe run`` processes and really kill them (SIGKILL, SIGINT).
"""

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
from support import write_config

from gradprobe.bench.execute.runner import run_sweep
from gradprobe.bench.plan.loader import config_with_overrides, load_config, parse_config

# ~40 cells of a few hundred milliseconds each: long enough to be killed mid-run, and for a
# second `gradprobe run` to start (imports included) before the first one ends. 48 seeds ran
# in 1.4 s once the engine got its CPU policy, faster than a second process starts.
SLOW = """name = "slow"
[model]
bias = true
[sweep]
seeds = 320
depth = [2, 3, 4, 5, 6, 8, 10]
width = [48, 96, 160]
residual = [false, true]
"""
N_CELLS = 42


def _default_stop_signals() -> None:
    # A child inherits ignored signals: when the tests run as a background job of a
    # non-interactive shell (`make test &`), SIGINT is SIG_IGN, the run ignored the test's
    # Ctrl-C and finished with exit 0 (issue 14, item 12). Give the run the default handlers
    # an interactive user's run has.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gradprobe", "run", str(config), "--out",
                             str(out), "--no-progress", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_stop_signals)


def wait_for_cells(out: Path, count: int, process: subprocess.Popen, timeout=120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = len(list((out / "records").glob("cell-*.parquet"))) if out.exists() else 0
        if done >= count or process.poll() is not None:
            return done
        time.sleep(0.02)
    raise AssertionError("run made no progress")


def sorted_records(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_parquet(run_dir / "records")
    return frame.sort_values(["cell_id", "seed", "param"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("cfg"), SLOW, "slow.toml")


@pytest.fixture(scope="module")
def uninterrupted(slow_config, tmp_path_factory) -> pd.DataFrame:
    run_dir = tmp_path_factory.mktemp("full") / "run"
    run_sweep(load_config(slow_config), out=run_dir, progress=False)
    return sorted_records(run_dir)


@pytest.mark.parametrize("kill_after", [1, N_CELLS // 2])
def test_sigkill_then_resume_gives_identical_records(tmp_path, slow_config, uninterrupted,
                                                     kill_after):
    out = tmp_path / "run"
    process = start(slow_config, out)
    done = wait_for_cells(out, kill_after, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert done < N_CELLS, "the run finished before it could be killed"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"  # killed: nothing could record the end
    resumed = subprocess.run([sys.executable, "-m", "gradprobe", "run", str(slow_config),
                              "--out", str(out), "--no-progress"], capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "already done" in resumed.stdout
    assert not list((out / "records").glob(".*"))  # no temporary files left
    frame = sorted_records(out)
    assert not frame.duplicated(["cell_id", "seed", "param"]).any()
    pd.testing.assert_frame_equal(frame, uninterrupted)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, slow_config, uninterrupted):
    out = tmp_path / "run"
    process = start(slow_config, out)
    wait_for_cells(out, 2, process)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"Resume with the same command and --out {out}" in stderr
    assert "Traceback" not in stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    run_sweep(load_config(slow_config), out=out, progress=False)
    pd.testing.assert_frame_equal(sorted_records(out), uninterrupted)


def test_second_writer_is_refused_while_the_first_finishes(tmp_path, slow_config,
                                                            uninterrupted):
    out = tmp_path / "run"
    first = start(slow_config, out)
    wait_for_cells(out, 1, first)
    second = subprocess.run([sys.executable, "-m", "gradprobe", "run", str(slow_config),
                             "--out", str(out), "--no-progress"], capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 2
    assert f"another gradprobe run (pid {first.pid}) is writing" in second.stderr
    assert first.wait(timeout=300) == 0
    pd.testing.assert_frame_equal(sorted_records(out), uninterrupted)


def test_resume_runs_only_missing_cells(tmp_path):
    config = load_config("smoke")
    out = tmp_path / "run"
    run_sweep(config, out=out, progress=False)
    before = sorted_records(out)
    victim = sorted((out / "records").glob("cell-*.parquet"))[3]
    victim.unlink()
    result = run_sweep(config, out=out, progress=False)
    assert (result.cells_run, result.cells_skipped) == (1, 11)
    pd.testing.assert_frame_equal(sorted_records(out), before)


def test_other_sweep_in_same_directory_is_refused_unless_forced(tmp_path):
    out = tmp_path / "run"
    run_sweep(load_config("smoke"), out=out, progress=False)
    other = parse_config('name = "other"\n[model]\ndepth = 2\nwidth = 3\n[sweep]\nseeds = 2\n')
    from gradprobe.core.errors import UserError

    with pytest.raises(UserError, match="holds records of another sweep"):
        run_sweep(other, out=out, progress=False)
    with pytest.raises(UserError, match="another sweep"):  # --seeds changes the plan too
        run_sweep(config_with_overrides(load_config("smoke"), seeds=3), out=out,
                  progress=False)
    result = run_sweep(other, out=out, progress=False, force=True)
    assert result.cells_run == 1
    assert set(pd.read_parquet(out / "records")["depth"]) == {2}


def test_stale_temporaries_are_cleaned_on_resume(tmp_path):
    out = tmp_path / "run"
    run_sweep(load_config("smoke"), out=out, progress=False)
    (out / "records" / ".cell-abc.parquet.999.tmp").write_bytes(b"half a file")
    run_sweep(load_config("smoke"), out=out, progress=False)
    assert not list((out / "records").glob(".*.tmp"))
    assert os.path.exists(out / "records")


def test_ctrl_c_stops_a_run_started_from_a_background_job(tmp_path, slow_config):
    # Regression (issue 14, item 12): with SIGINT ignored in the test process, as in a
    # background job, the run inherited SIG_IGN, ignored the signal and exited 0.
    out = tmp_path / "run"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process = start(slow_config, out)
    finally:
        signal.signal(signal.SIGINT, previous)
    wait_for_cells(out, 1, process)
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr


def test_sigterm_marks_the_manifest_interrupted(tmp_path, slow_config):
    # Regression (issue 14, item 11): SIGTERM killed the run without cleanup, leaving the
    # manifest "running" for ever.
    out = tmp_path / "run"
    process = start(slow_config, out)
    wait_for_cells(out, 1, process)
    assert process.poll() is None, "the run finished before it could be terminated"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "terminated; finished cells are kept" in stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_a_swallowed_ctrl_c_still_stops_the_run(tmp_path, monkeypatch):
    # Regression (issue 14, item 12): a KeyboardInterrupt raised inside code that drops it
    # (a finalizer: "Exception ignored in ...") let the run go on and finish with exit 0.
    from gradprobe.bench.execute import tasks
    real_write = tasks.write_cell
    writes = []

    def write_then_swallow_ctrl_c(*args, **kwargs):
        writes.append(real_write(*args, **kwargs))
        with contextlib.suppress(KeyboardInterrupt):  # what a finalizer does with it
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(tasks, "write_cell", write_then_swallow_ctrl_c)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_config("smoke"), out=out, progress=False)
    assert len(writes) < len(load_config("smoke").cells())
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_second_run_at_the_first_runs_start_is_told_who_writes(tmp_path):
    # Regression (issue 14, item 11): while the first run was writing its manifest (a
    # hidden temporary beside the lock), a second run checked the directory before the lock
    # and was told it was "not a gradprobe run directory".
    from gradprobe.bench.store.run_lock import run_lock
    from gradprobe.core.errors import UserError

    out = tmp_path / "run"
    (out / "records").mkdir(parents=True)
    with run_lock(out):
        (out / f".manifest.json.{os.getpid()}.tmp").write_text("{")
        with pytest.raises(UserError, match=rf"another gradprobe run \(pid {os.getpid()}\)"):
            run_sweep(load_config("smoke"), out=out, progress=False)


# 42 MB a seed at depth 4: --max-memory 64M runs one seed per chunk, the default 1G all
# three at once (a one-seed chunk can round differently, see docs/records.md).
CHUNKED = ('name = "chunked"\n[model]\nwidth = 512\nresidual = true\n[sweep]\n'
           'depth = [3, 4]\nseeds = 3\n')


def _run_then_lose_a_cell(tmp_path, name: str) -> tuple[Path, Path]:
    out = tmp_path / name
    run_sweep(parse_config(CHUNKED), out=out, progress=False, max_memory=64 * 2**20)
    victim = sorted((out / "records").glob("cell-*.parquet"))[0]
    victim.unlink()
    return out, victim


def test_resume_keeps_the_recorded_memory_budget(tmp_path):
    """Bug (issue 14, item 9): resuming with another --max-memory (or none) mixed records
    of two chunkings, whose rounding differs; a resume now runs with the recorded budget."""
    reference = tmp_path / "reference"
    run_sweep(parse_config(CHUNKED), out=reference, progress=False, max_memory=64 * 2**20)
    out, victim = _run_then_lose_a_cell(tmp_path, "run")
    result = run_sweep(parse_config(CHUNKED), out=out, progress=False)  # no --max-memory
    assert result.cells_run == 1 and victim.exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["max_memory"] == 64 * 2**20
    pd.testing.assert_frame_equal(sorted_records(out), sorted_records(reference),
                                  check_exact=True)


def test_resume_with_another_explicit_budget_is_refused(tmp_path):
    from gradprobe.core.errors import UserError

    out, victim = _run_then_lose_a_cell(tmp_path, "run")
    with pytest.raises(UserError, match=r"was run with --max-memory 67108864 \(bytes\)"):
        run_sweep(parse_config(CHUNKED), out=out, progress=False, max_memory=2**30)
    assert not victim.exists()
    result = run_sweep(parse_config(CHUNKED), out=out, progress=False, max_memory=2**30,
                       force=True)
    assert result.cells_run == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["max_memory"] == 2**30
