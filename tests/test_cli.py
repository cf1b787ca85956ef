"""End to end through the installed ``gradprobe`` command, as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import SMOKE, write_config


def gradprobe(*args, cwd=None) -> subprocess.CompletedProcess:
    exe = shutil.which("gradprobe") or sys.executable
    prefix = [exe] if exe.endswith("gradprobe") else [exe, "-m", "bench.cli"]
    return subprocess.run([*prefix, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_smoke_run_analyze_report(tmp_path):
    run_dir = tmp_path / "run"
    done = gradprobe("run", SMOKE, "--out", run_dir, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "records from 12 cells" in done.stdout
    frame = pd.read_parquet(run_dir / "records")
    assert len(frame) == 16 * 36
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["cells"]) == 12
    assert manifest["config"]["source"] == "bench/configs/smoke.toml"
    for key in ("torch", "numpy", "python", "cpu", "torch_threads", "git", "gpus"):
        assert key in manifest["environment"]
    done = gradprobe("analyze", run_dir, "--resamples", "199")
    assert done.returncode == 0, done.stderr
    done = gradprobe("report", run_dir, "-o", tmp_path / "report.html")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_bench_writes_run_report_and_latest(tmp_path):
    done = gradprobe("bench", SMOKE, "--root", tmp_path / "reports", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "layers.0.weight" in done.stdout and "residual/plain" in done.stdout
    latest = tmp_path / "reports" / "latest" / "index.html"
    assert latest.is_file()
    (run_dir,) = [p for p in (tmp_path / "reports").iterdir() if p.name.startswith("smoke-")]
    assert (run_dir / "index.html").read_bytes() == latest.read_bytes()


@pytest.mark.parametrize("text,message", [
    ('name = "x"\n[model]\ndepth = 1\n', "[model] depth = 1: must be >= 2"),
    ('name = "x"\n[model]\nwidth = 0\n', "[model] width = 0"),
    ('name = "x"\n[model]\nwdith = 3\n', "[model] wdith: unknown key"),
    ('name = "x"\n[sweep]\ndevice = ["cuda:7"]\n', "[sweep] device"),
    ("name = [\n", "malformed TOML"),
])
def test_bad_config_exits_2_and_writes_nothing(tmp_path, text, message):
    path = write_config(tmp_path, text)
    out = tmp_path / "out"
    done = gradprobe("run", path, "--out", out, "--no-progress")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists()


def test_missing_run_directory_exits_2(tmp_path):
    for command in ("analyze", "report"):
        done = gradprobe(command, tmp_path / "nothing")
        assert done.returncode == 2
        assert "nothing" in done.stderr and done.stderr.count("\n") == 1


def test_bench_with_training_reports_it(tmp_path):
    from tests.conftest import TRAIN_SMOKE

    path = write_config(tmp_path, TRAIN_SMOKE.replace("seeds = 10", "seeds = 6"), "t.toml")
    done = gradprobe("bench", path, "--root", tmp_path / "reports", "--no-progress")
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert "Steps to reach a target loss" in html and 'id="figure-train-loss"' in html
    (run_dir,) = [p for p in (tmp_path / "reports").iterdir() if p.name.startswith("train")]
    loss = pd.read_parquet(run_dir / "train" / "loss")
    assert len(loss) == 4 * 6 * 31


def test_bad_factory_exits_2_and_writes_nothing(tmp_path):
    path = write_config(tmp_path, 'name = "x"\n[model]\nfactory = "nowhere_xyz:make"\n')
    out = tmp_path / "out"
    done = gradprobe("run", path, "--out", out, "--no-progress")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and '[model] factory = "nowhere_xyz:make": cannot import' in lines[0]
    assert not out.exists()
