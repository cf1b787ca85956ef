"""Every bad input in docs/errors.md: one line, exit code 2, nothing half-written."""

from __future__ import annotations

import ast
import errno
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support import REPO, SMOKE

from gradprobe.bench.execute.runner import run_sweep
from gradprobe.bench.plan.loader import load_config, parse_config
from gradprobe.bench.store.records import record_files
from gradprobe.core import atomic_files
from gradprobe.core.errors import UserError


def gradprobe(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradprobe", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_every_row_of_the_docs_table_names_an_existing_test():
    table = (REPO / "docs" / "errors.md").read_text()
    names = re.findall(r"`(tests/test_\w+\.py)::(test_\w+)`", table)
    assert len(names) >= 20
    for path, name in names:
        tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"{path}::{name} is missing"


@pytest.mark.parametrize("args,fragment", [
    (["run", SMOKE, "--max-memory", "lots"], "--max-memory"),
    # Regression (issue 14, item 11): these were tracebacks or silently accepted.
    (["run", SMOKE, "--max-memory", "infG"], "--max-memory"),
    (["run", SMOKE, "--max-memory", "1e400G"], "--max-memory"),
    (["run", SMOKE, "--seeds", str(10**12)], "--seeds must be <= 100000"),
    (["analyze", "x", "--bootstrap-seed", "-1"], "--bootstrap-seed: '-1': must be >= 0"),
    (["compare", "a", "b", "--bootstrap-seed", "-1"], "--bootstrap-seed"),
    (["compare", "a", "b", "--tolerance", "inf"], "--tolerance: 'inf': must be a finite"),
    (["compare", "a", "b", "--tolerance", "0.5"], "--tolerance: '0.5'"),
    (["history", "--tolerance", "nan"], "--tolerance: 'nan': must be a finite"),
    (["calibrate", "smoke", "--power-tolerance", "inf"], "--power-tolerance: 'inf'"),
    (["frobnicate"], "invalid choice"),
    (["run"], "required: config"),
    (["analyze"], "required: run_dir"),
])
def test_bad_command_line_is_one_line(args, fragment):
    assert_one_line_error(gradprobe(*args), fragment)


@pytest.fixture
def run_copy(smoke_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(smoke_run, target)
    return target


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_corrupt_records_file_on_analyze(run_copy):
    victim = record_files(run_copy)[2]
    _truncate(victim)
    before = {p.name: p.read_bytes() for p in (run_copy / "analysis").glob("*")} \
        if (run_copy / "analysis").exists() else {}
    assert_one_line_error(gradprobe("analyze", run_copy), victim.name, "not a readable Parquet")
    after = {p.name: p.read_bytes() for p in (run_copy / "analysis").glob("*")} \
        if (run_copy / "analysis").exists() else {}
    assert after == before  # an earlier analysis is neither replaced nor half-overwritten


def test_corrupt_records_file_on_resume(run_copy):
    victim = record_files(run_copy)[0]
    _truncate(victim)
    size = victim.stat().st_size
    assert_one_line_error(gradprobe("run", SMOKE, "--out", run_copy, "--no-progress"),
                          victim.name, "delete it")
    assert victim.stat().st_size == size  # not deleted, not counted as done


def test_empty_run_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    for command in ("analyze", "report"):
        assert_one_line_error(gradprobe(command, tmp_path / "empty"), "empty: no manifest.json")


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_one_line_error(gradprobe("run", SMOKE, "--out", blocker, "--no-progress"),
                          "not a directory")
    assert_one_line_error(gradprobe("run", SMOKE, "--out", blocker / "run", "--no-progress"),
                          "cannot create run directory")
    assert_one_line_error(gradprobe("run", SMOKE, "--out", "/proc/gradprobe-run",
                                    "--no-progress"), "cannot create run directory")
    assert blocker.read_text() == "x"


def test_disk_full_leaves_nothing_half_written(tmp_path, monkeypatch):
    real_replace = atomic_files.os.replace
    calls = {"n": 0}

    def full_after_five(src, dst):  # each cell writes its histograms, then its records
        calls["n"] += 1
        if calls["n"] > 5 and str(dst).endswith(".parquet"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", full_after_five)
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"cannot write \(No space left on device\); check free"):
        run_sweep(load_config(SMOKE), out=out, progress=False)
    assert not list((out / "records").glob(".*"))  # no temporaries left behind
    assert not list((out / "histograms").glob(".*"))
    kept = pd.read_parquet(out / "records")  # finished cells are whole and readable
    assert len(kept) > 0 and not kept.duplicated(["cell_id", "seed", "param"]).any()
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_disk_full_for_the_manifest_too_reads_as_interrupted(tmp_path, monkeypatch):
    # Regression (issue 14, item 11): with the disk too full to rewrite the manifest, the
    # run ended with a message about manifest.json (hiding the failed cell) and the manifest
    # said "running" for ever.
    from gradprobe.bench.store.manifest import read_manifest

    real_replace = atomic_files.os.replace
    calls = {"n": 0}

    def full_after_three(src, dst):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", full_after_three)
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"\.parquet: cannot write \(No space left on device\)"):
        run_sweep(load_config(SMOKE), out=out, progress=False)
    monkeypatch.undo()
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    assert read_manifest(out).status == "interrupted"  # no process holds its lock


def test_nonfinite_gradients_are_counted_and_reported(tmp_path):
    config = parse_config('name = "overflow"\n[model]\ndepth = 4\nwidth = 4\ninit_gain = 1e25\n'
                          "[sweep]\nseeds = 6\nresidual = [false, true]\n")
    out = tmp_path / "run"
    run_sweep(config, out=out, progress=False)
    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run
    from gradprobe.analysis.report.report_page import write_report

    analysis = analyze_run(out, settings=AnalysisSettings(n_resamples=199))
    grads = analysis.summary[analysis.summary["metric"] == "grad_mean_abs"]
    assert grads["n_nonfinite"].sum() > 0
    assert (grads["n_used"] + grads["n_zero"] + grads["n_nonfinite"] == grads["n_seeds"]).all()
    html = write_report(out, analysis=analysis).read_text()
    assert "non-finite" in html and "excluded from the log-scale statistics" in html


def test_max_memory_below_one_mib_is_refused(tmp_path):
    """Bug: --max-memory 0 was accepted though [sweep] max_memory must be >= 1 MiB."""
    for size in ("0", "1000"):
        out = tmp_path / f"out-{size}"
        assert_one_line_error(gradprobe("run", SMOKE, "--out", out, "--max-memory", size),
                              "--max-memory", "must be >= 1048576")
        assert not out.exists()


def test_newer_schema_records_file_on_resume(run_copy):
    """Bug: resume counted a records file of a newer schema version as a finished cell,
    though analyze refuses it."""
    import pyarrow.parquet as pq

    victim = record_files(run_copy)[0]
    table = pq.read_table(victim)
    meta = {**table.schema.metadata, b"gradprobe.schema_version": b"99"}
    pq.write_table(table.replace_schema_metadata(meta), victim)
    for args in (["analyze", run_copy], ["run", SMOKE, "--out", run_copy, "--no-progress"]):
        assert_one_line_error(gradprobe(*args), victim.name,
                              "records schema version 99 is newer")


def test_foreign_directory_is_refused_even_with_force(tmp_path):
    """Bug: a non-empty --out without manifest.json was accepted, and --force then deleted
    the user's files in it."""
    out = tmp_path / "D"
    (out / "records").mkdir(parents=True)
    (out / "records" / "mydata.txt").write_text("keep")
    for extra in ([], ["--force"]):
        assert_one_line_error(gradprobe("run", SMOKE, "--out", out, "--no-progress", *extra),
                              "records/mydata.txt", "not a gradprobe run directory")
    assert (out / "records" / "mydata.txt").read_text() == "keep"
    assert sorted(p.name for p in out.rglob("*")) == ["mydata.txt", "records"]


def test_force_removes_only_gradprobe_files(run_copy):
    """Bug: --force removed records/ and train/ whole, with any file a user kept there."""
    mine = [run_copy / "records" / "notes.txt", run_copy / "records" / ".hidden.tmp",
            run_copy / "train" / "loss" / "mine.csv"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep")
    other = parse_config('name = "other"\n[model]\ndepth = 2\nwidth = 3\n[sweep]\nseeds = 2\n')
    assert run_sweep(other, out=run_copy, progress=False, force=True).cells_run == 1
    assert all(path.read_text() == "keep" for path in mine)
    assert len(record_files(run_copy)) == 1


@pytest.mark.parametrize("args,fragment", [
    (["--executor", "dask", "--workers", "-1"], "--workers -1: must be >= 1"),
    (["--executor", "processes", "--workers", "-1"], "--workers -1: must be >= 1"),
    (["--executor", "processes", "--workers", "0"], "--workers 0: must be >= 1"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "only used with --executor dask"),
    (["--executor", "processes", "--scheduler", "tcp://127.0.0.1:8786"], "--executor dask"),
    (["--workers", "2"], "only used with --executor processes or dask"),
])
def test_bad_workers_or_scheduler_is_one_line(tmp_path, args, fragment):
    """Bug: --workers -1 hung (dask) or crashed with a traceback (processes), --workers 0 was
    silently the default, and --scheduler without --executor dask was silently ignored."""
    out = tmp_path / "out"
    assert_one_line_error(gradprobe("run", SMOKE, "--out", out, "--no-progress", *args),
                          fragment)
    assert not out.exists()


def test_unreachable_scheduler_leaves_no_run_directory(tmp_path, monkeypatch, capsys):
    """Bug: an unreachable Dask scheduler left a half-made run directory (config.toml, an
    "interrupted" manifest, empty records/)."""
    pytest.importorskip("dask.distributed")
    from gradprobe.bench.execute import executors
    from gradprobe.cli.main import main

    monkeypatch.setattr(executors, "DASK_CONNECT_TIMEOUT", "1s")
    out = tmp_path / "out"
    code = main(["run", str(SMOKE), "--out", str(out), "--no-progress", "--executor", "dask",
                 "--scheduler", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--scheduler tcp://127.0.0.1:1: cannot connect to the Dask scheduler" in err
    assert not out.exists()


def test_cell_file_copied_over_another_is_refused(run_copy):
    # Regression (issue 14, item 4): a cell file copied over another crashed analyze (two
    # copies of one cell's rows) and was counted as done on resume.
    source, victim = record_files(run_copy)[:2]
    shutil.copyfile(source, victim)
    assert_one_line_error(gradprobe("analyze", run_copy), victim.name,
                          "not of the cell its name says")
    assert_one_line_error(gradprobe("run", SMOKE, "--out", run_copy, "--no-progress"),
                          victim.name, "not of the cell its name says")


def test_cell_file_of_another_sweep_is_refused(run_copy, tmp_path):
    # Regression (issue 14, item 4): a valid cell file of another sweep in records/ was
    # silently analysed with this run's cells.
    other = parse_config('name = "other"\n[model]\ndepth = 2\nwidth = 3\n[sweep]\nseeds = 2\n')
    run_sweep(other, out=tmp_path / "other", progress=False)
    stray = record_files(tmp_path / "other")[0]
    shutil.copyfile(stray, run_copy / "records" / stray.name)
    with pytest.raises(UserError, match=f"{stray.name}: cell .* is not part of this run's"):
        from gradprobe.bench.store.records import read_records

        read_records(run_copy)
    assert_one_line_error(gradprobe("analyze", run_copy), stray.name, "another run")


def test_cell_file_with_other_seeds_is_refused(run_copy):
    # A cell file whose seed list differs from the manifest's (a hand-edited manifest, or a
    # file made under other --seeds and renamed) is not this run's cell.
    manifest = json.loads((run_copy / "manifest.json").read_text())
    manifest["config"]["seeds"] = manifest["config"]["seeds"][:-1]
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(gradprobe("analyze", run_copy), "has seeds [0, 1, 2, 3, 4, 5, ...], "
                                                          "not the seeds [0, 1, 2, 3, 4, 5, ...]")


@pytest.mark.parametrize("damage", ["cells", "config", "environment"])
def test_manifest_missing_keys_is_one_line(run_copy, damage):
    # Regression (issue 14, item 11): a manifest missing a key gave a KeyError traceback.
    manifest = json.loads((run_copy / "manifest.json").read_text())
    del manifest[damage]
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(gradprobe("analyze", run_copy), "manifest.json: damaged manifest")


def test_cell_over_max_memory_is_refused_before_writing(tmp_path):
    """Bug (issue 14, item 2): a cell whose one seed needs more than --max-memory started
    anyway (depth 64 x width 8192, 80 GB a seed, was OOM-killed)."""
    config = tmp_path / "wide.toml"
    config.write_text('name = "wide"\n[model]\ndepth = 4\nwidth = 512\n[sweep]\nseeds = 2\n')
    out = tmp_path / "run"
    assert_one_line_error(gradprobe("run", config, "--out", out, "--max-memory", "1M"),
                          "one seed needs about", "raise --max-memory")
    assert not out.exists()


def test_resamples_above_the_bound_are_refused(run_copy):
    """Bug (issue 14, item 2): `analyze --resamples 100000000000` was OOM-killed at 23 GB."""
    before = sorted(p.name for p in run_copy.rglob("*"))
    assert_one_line_error(gradprobe("analyze", run_copy, "--resamples", "100000000000"),
                          "--resamples 100000000000: use 100 to 100000")
    assert sorted(p.name for p in run_copy.rglob("*")) == before
