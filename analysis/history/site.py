"""``gradprobe publish``: a static site of every analysed run under ``reports/``.

::

    site/index.html               runs table, newest first; links to every page below
    site/runs.csv                 the same table as CSV
    site/runs/<run>/index.html    the run's report (self-contained, as `gradprobe report`)
    site/runs/<run>/manifest.json its manifest, for provenance
    site/<page>                   pages contributed by PAGE_HOOKS (history/index.html,
                                  regressions/index.html)
    site/.nojekyll                GitHub Pages: serve the files as they are
    site/.gradprobe-site          marks the directory as a gradprobe site

A run's ``compare.json`` (megabytes for a large sweep) stays in its run directory: the
site shows its verdicts in the run's report, the index and the regressions page, so what a
run adds to the site is its report and manifest. The copied reports get links back to the
index, the history and the regressions page.

Every link is relative, every page self-contained, so the directory works from ``file://``,
``python -m http.server`` or GitHub Pages. The site is built in a hidden sibling directory
and swapped in at the end: a failed publish leaves the previous site untouched. Only an
empty directory or an earlier gradprobe site is ever replaced.

Other stages plug in through two lists of hooks (see :data:`PAGE_HOOKS`,
:data:`SECTION_HOOKS`): each hook receives a :class:`SiteContext` and returns a page or an
index section, or None when it has nothing to show.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pandas as pd
from markupsafe import Markup, escape

from gradprobe.analysis.analyze import load_analysis
from gradprobe.analysis.compare.compare_output import read_comparison as read_compare_json
from gradprobe.analysis.history.regressions import side_name
from gradprobe.analysis.report.headline import fmt_ci, fmt_p
from gradprobe.analysis.report.pages import csv_data_uri, csv_safe, render_page, sort_value
from gradprobe.analysis.report.report_page import headline_for, write_report
from gradprobe.analysis.report.variants import residual_switch_applies, switch_labels
from gradprobe.bench.store.manifest import MANIFEST_FILE, Manifest, read_manifest
from gradprobe.bench.store.run_dir import COMPARE_JSON, start_order
from gradprobe.core.atomic_files import ensure_directory, write_atomic, write_text_atomic
from gradprobe.core.errors import UserError

MARKER = ".gradprobe-site"
COMPARE_FILE = COMPARE_JSON
HISTORY_DIR = "history"
REGRESSIONS_DIR = "regressions"


@dataclass(frozen=True)
class RunEntry:
    """One published run: where it is, what produced it, and its headline number."""

    name: str  # the run directory's name, also its folder under site/runs/
    path: Path
    config: str
    started_at: str  # ISO 8601, UTC
    commit: str | None  # the measured code's commit (the manifest's ``code``)
    dirty: bool
    torch: str
    devices: str
    seeds: int
    cells: int
    headline: str  # "grad_mean_abs, depth 5, width 10"
    ratio: tuple[float, float, float] | None  # layer-0 weight residual/plain, CI low, high
    p_adjusted: float | None
    significant: bool | None
    verdict: str | None  # compare.json's verdict, when the run was compared
    analysed_at: str  # analysis.json's created_at: a report showing another is stale
    # Whether ``residual`` switched skip connections (report.variants): False for models
    # as built (a factory that takes no ``residual``), never to be called plain.
    residual_switched: bool = True

    @property
    def href(self) -> str:
        """Relative URL of the run's report from the site root."""
        return f"runs/{quote(self.name)}/index.html"

    @property
    def variants(self) -> str:
        """What the run measured, in the report's words: ``plain, residual`` or
        ``as built``."""
        return ", ".join(switch_labels(self.residual_switched).values())


@dataclass(frozen=True)
class SiteContext:
    """What hooks see: the reports directory scanned and the runs found (newest first)."""

    reports: Path
    runs: tuple[RunEntry, ...]


@dataclass(frozen=True)
class SitePage:
    """A whole extra page: ``path`` relative to the site root, ``html`` self-contained, with
    links relative to its own location (``../runs/<run>/index.html``)."""

    path: str
    title: str
    html: str


@dataclass(frozen=True)
class SiteSection:
    """A section on the index page. ``body`` is trusted HTML: escape what goes into it."""

    id: str
    title: str
    body: Markup


@dataclass(frozen=True)
class PublishResult:
    out: Path
    runs: list[RunEntry]
    skipped: list[str] = field(default_factory=list)  # "<dir>: <why>" for each run left out
    pages: list[str] = field(default_factory=list)  # extra pages written, relative paths


# -- finding runs --------------------------------------------------------------------------

def find_runs(reports: Path) -> tuple[list[RunEntry], list[str]]:
    """Direct subdirectories of ``reports`` that hold a complete, analysed run, newest
    first; and a reason for each run directory left out. Directories without a manifest
    (``latest/``, ``history/``, ``baselines/``) are not runs and are passed over silently."""
    if not reports.is_dir():
        raise UserError(f"{reports}: no such directory; run `gradprobe bench` first or pass "
                        "--reports DIR")
    runs, skipped = [], []
    for path in sorted(p for p in reports.iterdir() if p.is_dir()):
        if not (path / MANIFEST_FILE).is_file():
            continue
        try:
            runs.append(run_entry(path))
        except UserError as err:
            skipped.append(f"{path}: {err}")
    runs.sort(key=lambda r: start_order(r.started_at, r.path), reverse=True)
    return runs, skipped


def run_entry(path: Path) -> RunEntry:
    """Read one run directory; UserError when it is incomplete or not analysed."""
    manifest = read_manifest(path)
    if manifest.status != "complete":
        raise UserError(f"run status is {manifest.status!r}; finish it with "
                        "`gradprobe run` into the same --out")
    analysis = load_analysis(path)
    headline = headline_for(analysis, manifest)
    env = manifest.environment
    row = _first_layer(headline.table)
    has_ratio = row is not None and "ratio" in row
    return RunEntry(
        name=path.name, path=path, config=manifest.config.name,
        started_at=manifest.started_at, commit=manifest.measured_commit,
        dirty=bool((manifest.code or manifest.git).get("dirty")), torch=env["torch"],
        devices=devices_text(manifest), seeds=len(manifest.config.seeds),
        cells=len(manifest.cells), headline=f"{headline.metric}, {headline.where}",
        ratio=(row["ratio"], row["ratio_low"], row["ratio_high"]) if has_ratio else None,
        p_adjusted=row["p_adjusted"] if has_ratio else None,
        significant=bool(row["significant"]) if has_ratio else None,
        verdict=_verdict(path), analysed_at=analysis.meta["created_at"],
        residual_switched=residual_switch_applies(manifest))


def _first_layer(table: pd.DataFrame) -> pd.Series | None:
    rows = table[(table["layer"] == 0) & table["param"].str.endswith(".weight")]
    return rows.iloc[0] if len(rows) else None


def devices_text(manifest: Manifest) -> str:
    """``cpu (AMD EPYC)``, ``cuda:0 (NVIDIA H100)``: each device the cells ran on."""
    env = manifest.environment
    devices = sorted({cell.axes.get("device", "cpu") for cell in manifest.cells})
    named = []
    for device in devices:
        model = env.get("cpu") if device == "cpu" else ", ".join(env.get("gpus") or [])
        named.append(f"{device} ({model})" if model else device)
    return "; ".join(named)


def _verdict(path: Path) -> str | None:
    comparison = read_comparison(path)
    return comparison_summary(comparison)["verdict"] if comparison else None


# -- hooks: pages and sections contributed by other stages ---------------------------------

def read_comparison(run_dir: Path) -> dict | None:
    """``<run>/compare.json`` (written by ``gradprobe compare``), version-checked, or None.

    The site shows :func:`comparison_summary` of it; everything else stays in the linked
    JSON file."""
    return read_compare_json(run_dir / COMPARE_FILE)


# Columns of compare.json's ``tests`` shown on the site (the JSON has them all).
_TEST_COLUMNS = ("verdict", "depth", "width", "residual", "param", "metric", "pairing",
                 "ratio", "ci_low", "ci_high", "p_adjusted", "reason")


def comparison_summary(data: dict) -> dict:
    """``compare.json`` (``compare_version`` 1, see docs/regression.md) reduced to what the
    site shows: ``baseline`` (its label), ``verdict`` (the gate and the verdict counts) and
    ``verdicts`` (the tests that are not ``unchanged``, flagged ones first)."""
    counts = data.get("counts") or {}
    shown = ", ".join(f"{counts[k]} {k}" for k in ("regressed", "improved", "inconclusive",
                                                   "unchanged") if k in counts)
    tests = [t for t in data.get("tests", []) if isinstance(t, dict)
             and t.get("verdict") != "unchanged"]
    order = {"regressed": 0, "improved": 1, "inconclusive": 2}
    tests.sort(key=lambda t: order.get(str(t.get("verdict")), 3))
    rows = [{k: t[k] for k in _TEST_COLUMNS if k in t} for t in tests]
    base = data.get("base") or {}
    return {"baseline": side_name(base),
            "verdict": f"{data.get('gate', 'unknown')} ({shown})" if shown
            else str(data.get("gate", "unknown")),
            "verdicts": rows}


def latest_comparison(context: SiteContext) -> SiteSection | None:
    """The newest run's comparison with its baseline, as an index section."""
    for run in context.runs:
        raw = read_comparison(run.path)
        if raw is None:
            continue
        comparison = comparison_summary(raw)
        rows = comparison["verdicts"]
        columns = list(dict.fromkeys(k for r in rows for k, v in r.items()
                                     if not isinstance(v, dict | list)))
        body = render_page("_comparison.html.j2", run=run, comparison=comparison,
                           rows=rows, columns=columns,
                           json_href=f"{run.href}#comparison")
        return SiteSection("latest-comparison", "Latest comparison", Markup(body))
    return None


def site_links(prefix: str, context: SiteContext) -> dict[str, str]:
    """Navigation between the site's pages, relative to a page ``prefix`` (``../``) deep."""
    links = {"All runs": f"{prefix}index.html"}
    if any((context.reports / HISTORY_DIR).glob("run-*.parquet")):
        links["History"] = f"{prefix}{HISTORY_DIR}/index.html"
    return {**links, "Regressions": f"{prefix}{REGRESSIONS_DIR}/index.html"}


def history_page(context: SiteContext) -> SitePage | None:
    """The history page with change points, rendered from ``<reports>/history/`` (what
    ``gradprobe history add`` appends) when it holds any run."""
    from gradprobe.analysis.compare.comparison import DEFAULT_TOLERANCE
    from gradprobe.analysis.history.history_page import render_history
    from gradprobe.analysis.history.run_history import read_history, run_id

    root = context.reports / HISTORY_DIR
    if not any(root.glob("run-*.parquet")):
        return None
    ids = {run_id(read_manifest(r.path)): r for r in context.runs}
    history = read_history(root)
    # A published run's manifest says whether its residual flag switched skips, also for
    # history files written before they recorded it.
    known = history["run_id"].map({i: r.residual_switched for i, r in ids.items()})
    history["residual_switched"] = known.fillna(history["residual_switched"]).astype(bool)
    html = render_history(history, tolerance=DEFAULT_TOLERANCE,
                          run_names={i: r.name for i, r in ids.items()},
                          links=site_links("../", context))
    return SitePage(f"{HISTORY_DIR}/index.html", "History and change points", html)


def regressions_page(context: SiteContext) -> SitePage:
    """Every change the gate flagged in the published runs' comparisons, newest first."""
    from gradprobe.analysis.history.regressions import render_regressions

    return SitePage(f"{REGRESSIONS_DIR}/index.html", "Regressions",
                    render_regressions(context.runs, links=site_links("../", context)))


PAGE_HOOKS: list[Callable[[SiteContext], SitePage | None]] = [history_page,
                                                               regressions_page]
SECTION_HOOKS: list[Callable[[SiteContext], SiteSection | None]] = [latest_comparison]


# -- writing the site ----------------------------------------------------------------------

def runs_table(runs: list[RunEntry]) -> pd.DataFrame:
    """The index as a table (one row per run; ratio columns NaN where a run has none)."""
    return pd.DataFrame([{
        "run": r.name, "started_at": r.started_at, "config": r.config, "commit": r.commit,
        "dirty": r.dirty, "torch": r.torch, "devices": r.devices, "seeds": r.seeds,
        "cells": r.cells, "headline": r.headline, "variants": r.variants,
        "ratio": r.ratio[0] if r.ratio else None, "ratio_low": r.ratio[1] if r.ratio else None,
        "ratio_high": r.ratio[2] if r.ratio else None, "p_adjusted": r.p_adjusted,
        "significant": r.significant, "verdict": r.verdict} for r in runs],
        columns=["run", "started_at", "config", "commit", "dirty", "torch", "devices",
                 "seeds", "cells", "headline", "variants", "ratio", "ratio_low",
                 "ratio_high",
                 "p_adjusted", "significant", "verdict"])


def _index_row(run: RunEntry) -> dict:
    started = datetime.fromisoformat(run.started_at).astimezone(UTC)
    return {"run": run, "date": started.strftime("%Y-%m-%d %H:%M"),
            "commit": (run.commit or "unknown")[:10] + (" (dirty)" if run.dirty else ""),
            "ratio": fmt_ci(*run.ratio) if run.ratio else "n/a",
            "ratio_sort": sort_value(run.ratio[0] if run.ratio else None),
            "p": fmt_p(run.p_adjusted) if run.ratio else "n/a",
            "p_sort": sort_value(run.p_adjusted)}


def render_index(runs: list[RunEntry], pages: list[SitePage], sections: list[SiteSection],
                 table: pd.DataFrame) -> str:
    return render_page("site_index.html.j2", rows=[_index_row(r) for r in runs],
                       pages=pages, sections=sections, csv_href=csv_data_uri(table),
                       compared=any(r.verdict is not None for r in runs),
                       generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))


def _copy_run(run: RunEntry, into: Path, pages: list[SitePage]) -> None:
    """The run's report and manifest into ``into`` (``site/runs/<run>``), the report with
    links to the index and ``pages``.

    The report is the run directory's own, unless it is missing or shows another analysis
    than the current one (re-analysed since): then it is rendered afresh into the site, and
    the run directory is left as it is."""
    into.mkdir(parents=True)
    report = run.path / "index.html"
    if not report_is_current(report, run.analysed_at):
        report = write_report(run.path, out=into / "index.html",
                              analysis=load_analysis(run.path))
    html = report.read_text(encoding="utf-8")
    links = {"All runs": "../../index.html",
             **{p.title: f"../../{p.path}" for p in pages}}
    nav = "".join(f'<a href="{escape(href)}">{escape(title)}</a>'
                  for title, href in links.items())
    write_text_atomic(into / "index.html", html.replace(REPORT_NAV, REPORT_NAV + nav, 1))
    if (run.path / MANIFEST_FILE).is_file():
        _copy(run.path / MANIFEST_FILE, into / MANIFEST_FILE)


# The report's table of contents (report.html.j2): the site's links go first in it.
REPORT_NAV = '<nav class="toc" aria-label="Sections">'


def report_is_current(report: Path, analysed_at: str) -> bool:
    """Whether ``report`` exists and was rendered from the analysis made at ``analysed_at``
    (the report's ``<meta name="gradprobe-analysis">``)."""
    if not report.is_file():
        return False
    with open(report, encoding="utf-8", errors="replace") as handle:
        head = handle.read(4096)
    return f'<meta name="gradprobe-analysis" content="{escape(analysed_at)}">' in head


def _copy(source: Path, target: Path) -> None:
    write_atomic(target, lambda tmp: shutil.copyfile(source, tmp))


def build_site(reports: Path, into: Path) -> PublishResult:
    """Write the whole site into the empty directory ``into``."""
    runs, skipped = find_runs(reports)
    context = SiteContext(reports, tuple(runs))
    pages = [p for hook in PAGE_HOOKS if (p := hook(context)) is not None]
    for run in runs:
        _copy_run(run, into / "runs" / run.name, pages)
    for page in pages:
        (into / page.path).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(into / page.path, page.html)
    sections = [s for hook in SECTION_HOOKS if (s := hook(context)) is not None]
    table = runs_table(runs)
    write_text_atomic(into / "index.html", render_index(runs, pages, sections, table))
    write_atomic(into / "runs.csv", lambda tmp: csv_safe(table).to_csv(tmp, index=False))
    for name in (".nojekyll", MARKER):
        write_text_atomic(into / name, "")
    return PublishResult(into, runs, skipped, [p.path for p in pages])


def _check_replaceable(out: Path, reports: Path) -> None:
    if reports.resolve().is_relative_to(out.resolve()):
        raise UserError(f"--out {out}: would replace the reports directory {reports}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise UserError(f"--out {out}: not empty and not a gradprobe site (no {MARKER}); "
                        "remove it or choose another directory")


def _building_directory(out: Path) -> Path:
    """A fresh hidden directory beside ``out`` to build the site in, readable by a web
    server's user (mkdtemp's 0700 would hide it)."""
    try:
        building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-{os.getpid()}-",
                                         dir=out.parent))
    except OSError as err:
        raise UserError(f"{out.parent}: cannot write the site here ({err.strerror or err}); "
                        "choose a writable --out") from None
    building.chmod(0o755)
    return building


def remove_stale_builds(out: Path) -> list[Path]:
    """Delete the build (``.<out>.building-<pid>-*``) and swap (``.<out>.old-<pid>``)
    directories of earlier publishes whose process is gone: a publish killed by SIGKILL or
    SIGTERM cannot clean up after itself, and they stayed for ever. Those of a publish still
    running (its pid alive) are left alone. Returns the paths removed."""
    prefix = glob.escape(f".{out.name}")
    removed = []
    patterns = ((".building-*", r"\.building-(\d+)-"), (".old-*", r"\.old-(\d+)$"))
    for suffix, pid_pattern in patterns:
        for path in out.parent.glob(prefix + suffix):
            found = re.search(pid_pattern, path.name)
            if found and path.is_dir() and not _alive(int(found.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def publish(*, reports: str | Path = "reports", out: str | Path = "site") -> PublishResult:
    """Build the site for ``reports`` and put it at ``out``, replacing an earlier site."""
    reports, out = Path(reports), Path(out)
    _check_replaceable(out, reports)
    ensure_directory(out.parent)
    remove_stale_builds(out)
    building = _building_directory(out)
    try:
        result = build_site(reports, building)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(building, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return PublishResult(out, result.runs, result.skipped, result.pages)
