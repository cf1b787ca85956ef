"""``gradprobe bench`` (make bench): a second run of a config is compared with the first,
and both land in the history, so the published site has verdicts and a history page."""

from __future__ import annotations

import json

import pytest
from support import REPO, SMOKE

from gradprobe.cli.main import main
from gradprobe.core.errors import UserError
from gradprobe.pipeline import baseline_path, latest_name, previous_of, previous_run


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

    # compare --previous RUN: the run of the same config before it, beside it.
    assert main(["compare", "--previous", str(second), "--out", str(tmp_path / "c")]) == 0
    assert f"BASE {first}" in capsys.readouterr().out
    assert previous_of(second) == first
    with pytest.raises(UserError, match=r"--previous .*no complete run of config 'smoke' "
                       "started before it"):
        previous_of(first)


def test_compare_shortcut_errors(tmp_path, capsys):
    assert main(["compare", "--baseline", "nope", str(tmp_path), "--baselines",
                 str(REPO / "reports" / "baselines")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--baseline nope: no baseline" in err
    assert "saved ones: smoke" in err
    assert main(["compare", "--previous", str(tmp_path), str(tmp_path)]) == 2
    assert "give BASE RUN, or RUN alone with --baseline NAME or --previous (got 2 paths)" in (
        capsys.readouterr().err)
    assert baseline_path("smoke", REPO / "reports" / "baselines").name == "smoke"


def test_latest_report_is_kept_per_config():
    """Bug: reports/latest/index.html was shared: a transformer run replaced default's."""
    assert latest_name("default") == "default" and latest_name("transformer") == "transformer"
    assert latest_name("../a b/c") == "_a_b_c" and latest_name("..") == "_"


def test_previous_run_ignores_other_configs_and_unfinished_runs(tmp_path):
    def fake_run(name: str, config: str, status: str, started: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(
            {"manifest_version": 1, "records_schema_version": 4,
             "config": {"name": config, "source": "c.toml", "text": "", "sha256": "0",
                        "seeds": [0]},
             "environment": {}, "status": status, "started_at": started, "cells": []}))

    fake_run("a", "default", "complete", "2026-01-01T00:00:00+00:00")
    fake_run("b", "default", "complete", "2026-02-01T00:00:00+00:00")
    fake_run("c", "default", "interrupted", "2026-03-01T00:00:00+00:00")
    fake_run("d", "smoke", "complete", "2026-04-01T00:00:00+00:00")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "manifest.json").write_text("{not json")
    assert previous_run(tmp_path, "default", exclude=tmp_path / "x") == tmp_path / "b"
    assert previous_run(tmp_path, "default", exclude=tmp_path / "b") == tmp_path / "a"
    assert previous_run(tmp_path / "absent", "default", exclude=tmp_path) is None


def test_runs_started_in_the_same_second_keep_their_order(tmp_path):
    """Bug: ``started_at`` had one-second resolution, so two runs made in the same second
    tied: ``previous_of`` the second found nothing before it and a published site listed
    them oldest first. Stamps are now to the microsecond; old stamps that tie fall back to
    the order ``default_run_dir`` made the directories in (``-2`` after the bare name)."""
    from gradprobe.bench.store.manifest import utc_now

    def fake_run(name: str, started: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(
            {"manifest_version": 1, "records_schema_version": 4,
             "config": {"name": "default", "source": "c.toml", "text": "", "sha256": "0",
                        "seeds": [0]},
             "environment": {}, "status": "complete", "started_at": started, "cells": []}))

    second = "2026-11-30T16:01:58+00:00"
    for name in ["default-20261130-160158", "default-20261130-160158-2",
                 "default-20261130-160158-10"]:
        fake_run(name, second)
    assert previous_run(tmp_path, "default", exclude=tmp_path / "x").name.endswith("-10")
    assert previous_of(tmp_path / "default-20261130-160158-2").name == "default-20261130-160158"
    assert previous_of(tmp_path / "default-20261130-160158-10").name.endswith("-2")
    with pytest.raises(UserError, match="started before it"):
        previous_of(tmp_path / "default-20261130-160158")
    first, then = utc_now(), utc_now()
    assert "." in first and first <= then  # microseconds, so ties need a second clock tick


def test_change_at_commit_4_is_a_change_point_and_a_regression(scratch_history, tmp_path):
    """Done-when of the history issue: runs at each of 6 commits of a user's repository
    whose model's init changes at commit 4, then publish: the history has a change point
    between commits 3 and 4, and the regressions page lists commit 4."""
    import re

    _, shas, reports = scratch_history
    site = tmp_path / "site"
    assert main(["publish", "--reports", str(reports), "--out", str(site)]) == 0
    history = (site / "history" / "index.html").read_text(encoding="utf-8")
    (data,) = re.findall(r'id="history-data">(.*?)</script>', history, flags=re.S)
    data = json.loads(data)
    assert [r["commit"] for r in data["runs"]] == shas  # in commit order
    first = data["series"][0]
    assert (first["param"], first["metric"]) == ("0.weight", "grad_mean_abs")
    (step,) = first["steps"]
    assert (step["before"], step["after"]) == (2, 3) and step["ratio"] > 1.5
    regressions = (site / "regressions" / "index.html").read_text(encoding="utf-8")
    flagged = set(re.findall(r"<code>([0-9a-f]{10})</code></a><br>", regressions))
    assert shas[3][:10] in flagged and shas[2][:10] in regressions
    assert not flagged - {shas[3][:10], shas[2][:10]}
    assert "#comparison" in regressions
    assert (reports / "latest" / "scratch" / "index.html").is_file()
