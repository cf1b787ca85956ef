"""``gradprobe bench`` (make bench): a second run of a config is compared with the first,
and both land in the history, so the published site has verdicts and a history page."""

from __future__ import annotations

import json

from support import SMOKE

from gradprobe.cli.main import main
from gradprobe.pipeline import previous_run


def test_second_bench_is_compared_and_both_enter_the_history(tmp_path, capsys):
    """Bug: make bench neither compared nor recorded history, so make publish built a site
    with no history page and an empty verdict column."""
    root = tmp_path / "reports"
    argv = ["bench", str(SMOKE), "--root", str(root), "--seeds", "6", "--no-progress"]
    assert main(argv) == 0
    first_out = capsys.readouterr().out
    assert "compared with the previous run" not in first_out and "history: " in first_out
    first = previous_run(root, "smoke", exclude=tmp_path)
    assert first is not None and not (first / "compare.json").exists()

    assert main(argv) == 0
    out = capsys.readouterr().out
    second = previous_run(root, "smoke", exclude=first)
    assert second is not None and second != first
    assert f"compared with the previous run {first}: 0 regressed" in out
    verdicts = json.loads((second / "compare.json").read_text())
    assert verdicts["gate"] == "pass"  # same code, same seeds: bit-identical records
    assert 'id="comparison"' in (second / "index.html").read_text(encoding="utf-8")
    assert len(list((root / "history").glob("run-*.parquet"))) == 2

    site = tmp_path / "site"
    assert main(["publish", "--reports", str(root), "--out", str(site)]) == 0
    assert (site / "history" / "index.html").is_file()
    index = (site / "index.html").read_text(encoding="utf-8")
    assert '<th scope="col">comparison</th>' in index and "<td>pass (" in index


def test_previous_run_ignores_other_configs_and_unfinished_runs(tmp_path):
    def fake_run(name: str, config: str, status: str, started: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(
            {"manifest_version": 1, "config": {"name": config}, "status": status,
             "started_at": started, "cells": []}))

    fake_run("a", "default", "complete", "2026-01-01T00:00:00+00:00")
    fake_run("b", "default", "complete", "2026-02-01T00:00:00+00:00")
    fake_run("c", "default", "interrupted", "2026-03-01T00:00:00+00:00")
    fake_run("d", "smoke", "complete", "2026-04-01T00:00:00+00:00")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "manifest.json").write_text("{not json")
    assert previous_run(tmp_path, "default", exclude=tmp_path / "x") == tmp_path / "b"
    assert previous_run(tmp_path, "default", exclude=tmp_path / "b") == tmp_path / "a"
    assert previous_run(tmp_path / "absent", "default", exclude=tmp_path) is None
