"""End to end through the installed ``gradprobe`` command, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from support import SMOKE, write_config


def gradprobe(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    # The console script installed beside this interpreter, not whichever one is first on
    # PATH (another checkout's virtual environment may be active).
    script = Path(sys.executable).with_name("gradprobe")
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "gradprobe"]
    environment = {**os.environ, **env} if env else None
    return subprocess.run([*prefix, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=environment)


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
    latest = tmp_path / "reports" / "latest" / "smoke" / "index.html"
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
        assert done.stderr.count("\n") == 1
        assert f"{tmp_path / 'nothing'}: no manifest.json; is this a gradprobe run directory?" \
            in done.stderr


def test_compare_missing_or_empty_directory_exits_2(tmp_path, smoke_run):
    """Bug: docs/errors.md had no row (and no test) for compare on a missing or an empty
    directory."""
    (tmp_path / "empty").mkdir()
    for base, run, message in [
        (tmp_path / "nothing", smoke_run, f"BASE {tmp_path / 'nothing'}: no such run or "
         "baseline directory"),
        (smoke_run, tmp_path / "empty", f"{tmp_path / 'empty'}: no manifest.json; is this "
         "a gradprobe run directory?"),
    ]:
        done = gradprobe("compare", base, run, "--out", tmp_path / "cmp")
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr
        assert not (tmp_path / "cmp").exists()


def test_run_and_analyze_json_is_the_only_thing_on_stdout(tmp_path, capsys):
    """--json prints one strict JSON object; progress and notes go to stderr."""
    from gradprobe.cli.main import main

    run_dir = tmp_path / "run"
    assert main(["run", str(SMOKE), "--out", str(run_dir), "--json"]) == 0
    captured = capsys.readouterr()
    ran = json.loads(captured.out)
    assert ran["rows"] == 16 * 36 and ran["cells"] == ran["cells_run"] == 12
    assert ran["run_dir"] == str(run_dir) and "running 12 cells" in captured.err
    assert main(["analyze", str(run_dir), "--resamples", "199", "--json"]) == 0
    out = capsys.readouterr().out
    analysed = json.loads(out)  # the whole of stdout parses: nothing else was printed
    assert "NaN" not in out and "Infinity" not in out
    assert analysed["settings"]["n_resamples"] == 199
    headline = analysed["headline"]
    assert headline["selection"]["depth"] == 3 and headline["metric"] == "grad_mean_abs"
    assert [r["param"] for r in headline["rows"]] == [f"layers.{i}.weight" for i in range(3)]
    assert all(r["plain_low"] <= r["plain"] <= r["plain_high"] for r in headline["rows"])


def test_json_rows_of_a_resumed_run(tmp_path, capsys):
    """Bug: `run --json` on a fully resumed run reported "rows": 0, not the rows the run
    directory holds."""
    from gradprobe.cli.main import main

    run_dir = tmp_path / "run"
    for _ in range(2):
        capsys.readouterr()
        assert main(["run", str(SMOKE), "--out", str(run_dir), "--json", "--no-progress"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["cells_run"] == 0 and resumed["cells_skipped"] == 12
    assert resumed["rows"] == 16 * 36 and resumed["rows_new"] == 0


def test_analyze_report_and_bench_print_the_same_headline_table(tmp_path, capsys):
    from gradprobe.analysis.analyze import load_analysis
    from gradprobe.analysis.report.headline import headline_for
    from gradprobe.cli.main import main

    run_dir = tmp_path / "run"
    main(["run", str(SMOKE), "--out", str(run_dir), "--no-progress"])
    capsys.readouterr()
    assert main(["analyze", str(run_dir), "--resamples", "199"]) == 0
    analysed = capsys.readouterr().out
    assert main(["report", str(run_dir)]) == 0
    reported = capsys.readouterr().out
    table = headline_for(load_analysis(run_dir)).text
    assert analysed.startswith(table + "\n\nanalysed ")
    assert reported.startswith(table + "\n\nreport -> ")


def test_publish_builds_the_site(reports_dir, tmp_path, capsys):
    from gradprobe.cli.main import main

    out = tmp_path / "site"
    assert main(["publish", "--reports", str(reports_dir), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == (f"published 2 runs, regressions/index.html -> "
                                    f"{out / 'index.html'}")
    assert captured.err == ""
    assert (out / "runs" / "smoke-run" / "index.html").is_file()
    assert main(["publish", "--reports", str(tmp_path / "nothing"), "--out",
                 str(tmp_path / "s2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "nothing: no such directory" in err and not (tmp_path / "s2").exists()


def test_bench_with_training_reports_it(tmp_path):
    from support import TRAIN_SMOKE

    path = write_config(tmp_path, TRAIN_SMOKE.replace("seeds = 10", "seeds = 6"), "t.toml")
    done = gradprobe("bench", path, "--root", tmp_path / "reports", "--no-progress")
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "reports" / "latest" / "train-smoke" / "index.html").read_text(
        encoding="utf-8")
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


def test_control_characters_in_parameter_names_are_printed_escaped(tmp_path):
    # Regression (issue 14, item 11): a factory's parameter name with an ANSI escape sequence
    # was printed raw by compare, recolouring (or worse) the user's terminal.
    config = tmp_path / "esc.toml"
    config.write_text('name = "esc"\n[model]\nfactory = "factory_models:escaped"\n'
                      "width = 3\n[sweep]\nseeds = 6\n")
    cli = [sys.executable, "-m", "gradprobe"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}  # factory_models
    subprocess.run([*cli, "run", str(config), "--out", str(tmp_path / "run"), "--no-progress"],
                   check=True, capture_output=True, timeout=300, env=env)
    done = subprocess.run([*cli, "compare", str(tmp_path / "run"), str(tmp_path / "run"),
                           "--all", "--resamples", "199", "--out", str(tmp_path / "cmp")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "w\\x1b[31m" in done.stdout
    assert "\x1b" not in done.stdout
