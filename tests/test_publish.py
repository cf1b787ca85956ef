"""``gradprobe publish``: the site's files, its links, escaping, hooks and safe replacement."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest
from support import HOSTILE_DIR, HOSTILE_NAME, REPO

from gradprobe.analysis.history import site
from gradprobe.core.errors import UserError


class Links(HTMLParser):
    """Every href and src of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.urls += [value for name, value in attrs if name in ("href", "src") and value]


def links(page: Path) -> list[str]:
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.urls


def assert_links_resolve(page: Path) -> list[Path]:
    """Every link of ``page`` is relative (or a data: URI / fragment) and names a file that
    exists; returns the files."""
    targets = []
    for url in links(page):
        parts = urlsplit(url)
        if parts.scheme == "data" or url.startswith("#"):
            continue
        assert not parts.scheme and not parts.netloc and not url.startswith("/"), url
        target = (page.parent / unquote(parts.path)).resolve()
        assert target.is_file(), f"{page}: {url} -> {target} is missing"
        targets.append(target)
    return targets


@pytest.fixture(scope="module")
def published(reports_dir, tmp_path_factory) -> site.PublishResult:
    return site.publish(reports=reports_dir, out=tmp_path_factory.mktemp("out") / "site")


def test_site_holds_every_run_and_its_report(published, reports_dir):
    out = published.out
    assert {r.name for r in published.runs} == {"smoke-run", HOSTILE_DIR}
    assert published.skipped == [] and published.pages == ["regressions/index.html"]
    for name in ("index.html", "runs.csv", ".nojekyll", site.MARKER):
        assert (out / name).is_file(), name
    for run in published.runs:
        copied = (out / "runs" / run.name / "index.html").read_text(encoding="utf-8")
        own = (reports_dir / run.name / "index.html").read_text(encoding="utf-8")
        # The run's own report with links back to the site (bug: run pages had none).
        nav = ('<a href="../../index.html">All runs</a><a href="../../regressions/'
               'index.html">Regressions</a>')
        assert copied == own.replace(site.REPORT_NAV, site.REPORT_NAV + nav, 1) != own
        assert (out / "runs" / run.name / "manifest.json").is_file()
    assert not (out / "runs" / "latest").exists()
    assert not list(out.parent.glob(".site.*"))  # no build or old directories left behind


def test_every_link_is_relative_and_resolves(published):
    index = published.out / "index.html"
    targets = assert_links_resolve(index)
    for run in published.runs:
        assert (published.out / "runs" / run.name / "index.html").resolve() in targets
        assert_links_resolve(published.out / "runs" / run.name / "index.html")
    assert (published.out / "runs.csv").resolve() in targets


def test_index_lists_provenance_and_the_headline_ratio(published, smoke_analysis):
    from gradprobe.analysis.report.headline import fmt_ci, headline_for

    html = (published.out / "index.html").read_text(encoding="utf-8")
    manifest = json.loads((smoke_analysis.run_dir / "manifest.json").read_text())
    row = headline_for(smoke_analysis).table.iloc[0]
    assert fmt_ci(row["ratio"], row["ratio_low"], row["ratio_high"]) in html
    assert manifest["environment"]["torch"] in html
    assert manifest["environment"]["git"]["commit"][:10] in html
    assert "cpu (" in html and "depth 3, width 8" in html
    table = pd.read_csv(published.out / "runs.csv")
    smoke = table[table["run"] == "smoke-run"].iloc[0]
    assert smoke["ratio"] == pytest.approx(row["ratio"], rel=1e-12)
    assert smoke["seeds"] == 16 and smoke["torch"] == manifest["environment"]["torch"]


def test_config_strings_are_escaped_in_the_index(published):
    html = (published.out / "index.html").read_text(encoding="utf-8")
    assert HOSTILE_NAME not in html and "<b>bold</b>" not in html
    assert "&lt;/title&gt;&lt;script&gt;window.__pwned" in html
    assert html.count("<script>") == 1
    assert 'href="runs/run%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E/index.html"' in html


def test_stale_report_is_rendered_afresh_without_touching_the_run(reports_dir, tmp_path):
    run = reports_dir / "smoke-run"
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    stale = tmp_path / "reports"
    shutil.copytree(run, stale / "smoke-run")
    meta["created_at"] = "2099-01-01T00:00:00+00:00"  # as if re-analysed after the report
    (stale / "smoke-run" / "analysis" / "analysis.json").write_text(json.dumps(meta))
    before = (stale / "smoke-run" / "index.html").read_bytes()
    result = site.publish(reports=stale, out=tmp_path / "site")
    page = (result.out / "runs" / "smoke-run" / "index.html").read_text(encoding="utf-8")
    assert 'content="2099-01-01T00:00:00+00:00"' in page
    assert (stale / "smoke-run" / "index.html").read_bytes() == before


def test_unfinished_and_unanalysed_runs_are_skipped_with_a_reason(reports_dir, tmp_path):
    root = tmp_path / "reports"
    shutil.copytree(reports_dir / "smoke-run", root / "unanalysed")
    shutil.rmtree(root / "unanalysed" / "analysis")
    shutil.copytree(reports_dir / "smoke-run", root / "running")
    manifest = json.loads((root / "running" / "manifest.json").read_text())
    (root / "running" / "manifest.json").write_text(json.dumps({**manifest,
                                                                "status": "running"}))
    from gradprobe.bench.store.run_lock import run_lock

    # A run reads as running only while a process holds its lock (else it was killed and
    # reads as interrupted, gradprobe.bench.store.manifest.read_manifest): hold it, as a live run
    # does.
    with run_lock(root / "running"):
        result = site.publish(reports=root, out=tmp_path / "site")
    assert result.runs == []
    assert len(result.skipped) == 2
    assert any("unanalysed" in s and "not analysed" in s for s in result.skipped)
    assert any("running" in s and "status is 'running'" in s for s in result.skipped)
    assert "No analysed runs yet" in (result.out / "index.html").read_text(encoding="utf-8")


def test_replaces_an_earlier_site_but_never_another_directory(reports_dir, tmp_path):
    out = tmp_path / "site"
    site.publish(reports=reports_dir, out=out)
    (out / "runs" / "gone").mkdir()
    site.publish(reports=reports_dir, out=out)
    assert not (out / "runs" / "gone").exists()
    precious = tmp_path / "docs"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(UserError, match="not a gradprobe site"):
        site.publish(reports=reports_dir, out=precious)
    assert (precious / "thesis.tex").read_text() == "keep me"
    with pytest.raises(UserError, match="would replace the reports directory"):
        site.publish(reports=reports_dir, out=reports_dir.parent)


def test_a_failed_build_leaves_the_previous_site(reports_dir, tmp_path, monkeypatch):
    out = tmp_path / "site"
    site.publish(reports=reports_dir, out=out)
    before = (out / "index.html").read_bytes()

    def broken(context):
        raise UserError("history: broken on purpose")

    monkeypatch.setattr(site, "PAGE_HOOKS", [broken])
    with pytest.raises(UserError, match="broken on purpose"):
        site.publish(reports=reports_dir, out=out)
    assert (out / "index.html").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_history_page_and_latest_comparison_plug_in(reports_dir, tmp_path):
    """A real compare.json (gradprobe compare) and a real history (gradprobe history add)
    appear on the site; strings planted in the comparison stay text."""
    from gradprobe.analysis.compare.compare_output import compare_dirs
    from gradprobe.analysis.history.run_history import append_run

    root = tmp_path / "reports"
    shutil.copytree(reports_dir / "smoke-run", root / "smoke-run")
    compare_dirs(REPO / "reports" / "baselines" / "smoke", root / "smoke-run", n_resamples=199)
    append_run(root / "smoke-run", root=root / "history")
    path = root / "smoke-run" / "compare.json"
    comparison = json.loads(path.read_text())
    assert comparison["base"]["label"] == "BASE"
    comparison["base"]["path"] = "reports/baselines/<b>main"
    comparison["tests"][0].update(verdict="regressed", param="<script>alert(1)</script>")
    comparison["gate"] = "fail"
    path.write_text(json.dumps(comparison))
    result = site.publish(reports=root, out=tmp_path / "site")
    assert result.pages == ["history/index.html", "regressions/index.html"]
    html = (result.out / "index.html").read_text(encoding="utf-8")
    assert 'href="history/index.html"' in html and 'id="latest-comparison"' in html
    # Bug: the index said "against baseline BASE" (compare's label), not its name.
    assert "fail (" in html and "baseline <strong>&lt;b&gt;main</strong>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and html.count("<script>") == 1
    # compare.json (megabytes for a large sweep) stays in the run directory.
    assert not (result.out / "runs" / "smoke-run" / "compare.json").exists()
    history = (result.out / "history" / "index.html").read_text(encoding="utf-8")
    assert '<svg id="chart"' in history and '"variant":"residual"' in history
    assert_links_resolve(result.out / "index.html")
    assert_links_resolve(result.out / "history" / "index.html")
    assert_links_resolve(result.out / "regressions" / "index.html")
    assert_links_resolve(result.out / "runs" / "smoke-run" / "index.html")
    assert result.runs[0].verdict.startswith("fail")


def test_missing_reports_directory_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        site.publish(reports=tmp_path / "nothing", out=tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_site_history_and_compare_work_for_factory_runs_only(transformer_analysis, tmp_path):
    """Regression: with only factory-model runs in the history, publish failed (exit 2, "no
    history rows match") because the history page asked for ``layers.0.weight``."""
    from gradprobe.analysis.compare.compare_output import compare_dirs
    from gradprobe.analysis.history.run_history import append_run

    root = tmp_path / "reports"
    shutil.copytree(transformer_analysis.run_dir, root / "transformer-run")
    comparison, _ = compare_dirs(root / "transformer-run", root / "transformer-run",
                                 n_resamples=199)
    assert comparison.counts()["regressed"] == 0 and comparison.counts()["unchanged"] > 0
    append_run(root / "transformer-run", root=root / "history")
    result = site.publish(reports=root, out=tmp_path / "site")
    assert result.pages == ["history/index.html", "regressions/index.html"]
    assert result.runs[0].ratio is not None  # the input-side weight's residual/plain ratio
    history = (result.out / "history" / "index.html").read_text(encoding="utf-8")
    assert "<svg" in history and "norm_position=post" in history
    assert_links_resolve(result.out / "index.html")


def test_the_site_calls_a_model_as_built_what_the_report_does(gpt2_analysis, tmp_path):
    """Bug: the site's history page named and coloured GPT-2's series (skips built in, the
    factory takes no ``residual``) "plain", and the index and runs.csv did not say what a
    run measured; a history file from before ``residual_switched`` is named from the
    published run's manifest."""
    import pyarrow.parquet as pq

    from gradprobe.analysis.history.run_history import append_run

    root = tmp_path / "reports"
    shutil.copytree(gpt2_analysis.run_dir, root / "gpt2-run")
    path, _ = append_run(root / "gpt2-run", root=root / "history")
    table = pq.read_table(path)  # as gradprobe wrote it before: version 2
    table = table.drop_columns(["residual_switched"]).replace_schema_metadata(
        {**table.schema.metadata, b"gradprobe.history_version": b"2"})
    pq.write_table(table, path)
    result = site.publish(reports=root, out=tmp_path / "site")
    history = (result.out / "history" / "index.html").read_text(encoding="utf-8")
    assert '"variant":"as built"' in history and '"variant":"plain"' not in history
    assert "plain networks" not in history
    assert pd.read_csv(result.out / "runs.csv")["variants"].tolist() == ["as built"]
    index = (result.out / "index.html").read_text(encoding="utf-8")
    assert '<span class="meta">as built</span>' in index


def test_regressions_name_the_variant_as_the_report_does():
    from gradprobe.analysis.history.regressions import cell_name

    test = {"depth": 3, "residual": False, "param": "layers.0.weight"}
    assert cell_name(test, ["depth", "residual"], switched=True) == "depth 3, plain"
    assert cell_name(test, ["depth", "residual"], switched=False) == "depth 3, as built"
    assert cell_name(test, [], switched=True) == "(one cell)"


def test_runs_csv_defuses_spreadsheet_formulas(reports_dir, tmp_path):
    # Regression (issue 14, item 11): a config named like a formula went into runs.csv as
    # is, and a spreadsheet opening the file ran it (CSV injection).
    reports = tmp_path / "reports"
    shutil.copytree(reports_dir / "smoke-run", reports / "smoke-run")
    manifest_path = reports / "smoke-run" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["config"]["name"] = '=HYPERLINK("http://example.invalid","x")'
    manifest_path.write_text(json.dumps(manifest))
    result = site.publish(reports=reports, out=tmp_path / "site")
    table = pd.read_csv(result.out / "runs.csv")
    assert table["config"].tolist() == ['\'=HYPERLINK("http://example.invalid","x")']
    assert (table["cells"] > 0).all()  # numbers stay numbers


def test_a_killed_publish_leaves_nothing_behind_after_the_next(reports_dir, tmp_path):
    # Regression (issue 14, item 11): a publish killed mid-build left .site.building-*
    # (and .site.old-*) beside the site for ever. The next publish removes those of dead
    # processes and leaves those of a running one alone.
    import os
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = [tmp_path / f".site.building-{gone.pid}-abc", tmp_path / f".site.old-{gone.pid}"]
    running = tmp_path / f".site.building-{os.getpid()}-xyz"
    for path in (*stale, running):
        (path / "runs").mkdir(parents=True)
    site.publish(reports=reports_dir, out=tmp_path / "site")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["site", running.name])


def test_runs_of_one_second_are_listed_newest_first(tmp_path):
    """Bug (CI, once): two ``make bench`` runs in the same second got ``x-<stamp>`` and
    ``x-<stamp>-2`` and equal second-resolution ``started_at``; the site's newest-first
    table and the regressions page listed the older first."""
    from gradprobe.bench.store.run_dir import start_order

    stamp = "2026-11-30T16:01:58+00:00"
    names = ["x-20261130-160158", "x-20261130-160158-2", "x-20261130-160159", "mine"]
    keys = {n: start_order(stamp if n != "x-20261130-160159" else "2026-11-30T16:01:59+00:00",
                           tmp_path / n) for n in names}
    newest_first = sorted(names, key=keys.get, reverse=True)
    assert newest_first == ["x-20261130-160159", "x-20261130-160158-2", "x-20261130-160158",
                            "mine"]
    assert start_order("2026-11-30T16:01:58.5+00:00", tmp_path / "a") > keys["x-20261130-160158-2"]
    with pytest.raises(UserError, match=r"started_at.*ISO 8601"):
        start_order("yesterday", tmp_path / "y")
