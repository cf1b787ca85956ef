"""``gradprobe baseline`` and ``gradprobe compare`` end to end: exit codes 0, 1 and 2."""

from __future__ import annotations

import json
import shutil

import pytest
from test_cli import gradprobe

from gradprobe.cli.main import main


@pytest.fixture(scope="module")
def saved(smoke_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    done = gradprobe("baseline", "save", smoke_run, "--name", "smoke", "--root", root)
    assert done.returncode == 0, done.stderr
    assert "12 records files" in done.stdout
    return root / "smoke"


def test_unchanged_run_passes_with_exit_0(saved, smoke_run, tmp_path):
    done = gradprobe("compare", saved, smoke_run, "--out", tmp_path, "--resamples", "199")
    assert done.returncode == 0, done.stderr
    assert "PASS: nothing regressed" in done.stdout
    # 36 parameters (all weights): 6 ratio tests (4 metrics, plus act_rms and grad_act_rms
    # per layer) and 3 zero-fraction tests each, of which the gate judges 2.
    assert "324 unchanged" in done.stdout
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert doc["compare_version"] == 1 and doc["gate"] == "pass"
    assert doc["counts"]["unchanged"] == len(doc["tests"]) == 324
    assert doc["gate_counts"]["unchanged"] == 72
    assert (tmp_path / "compare.md").read_text().startswith("## ✅")


def test_planted_change_fails_with_exit_1_and_writes_into_the_run(saved, smoke_variants,
                                                                  tmp_path):
    run = tmp_path / "gain"
    shutil.copytree(smoke_variants["gain"], run)
    summary = tmp_path / "summary.md"
    done = gradprobe("compare", saved, run, "--resamples", "199",
                     env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert done.returncode == 1, done.stderr
    assert "config differences: model.init_gain: 1.0 -> 1.05" in done.stdout
    assert "FAIL:" in done.stdout and "regressed" in done.stdout
    doc = json.loads((run / "compare.json").read_text())
    assert doc["gate"] == "fail" and doc["counts"]["regressed"] > 100
    assert summary.read_text().startswith("## ❌")


def test_missing_or_corrupt_inputs_exit_2_with_one_line(saved, smoke_run, tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(smoke_run, corrupt)
    victim = sorted((corrupt / "records").iterdir())[0]
    victim.write_bytes(b"not parquet at all")
    done = gradprobe("compare", saved, corrupt, "--out", tmp_path / "o")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "not a readable Parquet file" in lines[0] and victim.name in lines[0]
    assert not (tmp_path / "o").exists()
    # The same entry point in-process (no second interpreter start): a missing directory.
    assert main(["compare", str(tmp_path / "missing"), str(smoke_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such run or baseline directory" in err[0]


def test_deleted_cell_files_fail_as_missing(saved, smoke_run, tmp_path):
    """Regression (issue 14, item 4): a complete run with 10 of its 12 cell files deleted
    compared `PASS: nothing regressed`. Each BASE cell without a counterpart is `missing`."""
    run = tmp_path / "gutted"
    shutil.copytree(smoke_run, run)
    for victim in sorted((run / "records").iterdir())[:10]:
        victim.unlink()
    done = gradprobe("compare", saved, run, "--resamples", "199")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "FAIL:" in done.stdout and "missing" in done.stdout
    doc = json.loads((run / "compare.json").read_text())
    missing = [t for t in doc["tests"] if t["verdict"] == "missing"]
    assert doc["gate"] == "fail" and len({t["cell_base"] for t in missing}) == 10
    # The gutted run as BASE: its manifest lists cells it has no records for.
    done = gradprobe("compare", run, smoke_run, "--resamples", "199", "--out", tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    doc = json.loads((tmp_path / "compare.json").read_text())
    assert sum(t["verdict"] == "missing" and t["param"] == "" for t in doc["tests"]) == 10


def test_stray_records_files_are_refused(saved, smoke_run, smoke_variants, tmp_path):
    """Regression (issue 14, item 4): an extra file in a baseline's records was read
    unchecked. A file that baseline.json (or a run's manifest) does not account for is a
    one-line input error, exit 2, nothing written."""
    baseline = tmp_path / "baseline"
    shutil.copytree(saved, baseline)
    extra = sorted((smoke_variants["tanh"] / "records").iterdir())[0]
    shutil.copyfile(extra, baseline / "records" / extra.name)
    done = gradprobe("compare", baseline, smoke_run, "--out", tmp_path / "o")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and extra.name in lines[0] and "baseline.json" in lines[0]
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    shutil.copyfile(extra, run / "records" / extra.name)
    done = gradprobe("compare", saved, run, "--out", tmp_path / "o")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert extra.name in done.stderr and "manifest.json" in done.stderr
    assert not (tmp_path / "o").exists()
