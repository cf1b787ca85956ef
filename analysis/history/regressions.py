"""The site's regressions page (``site/regressions/index.html``), as asv's: every change the
compare gate flagged across the published runs, newest first.

Each published run that ``make bench`` compared with the previous run of its config (or
that ``gradprobe compare`` compared with anything) has ``<run>/compare.json``; its tests
with verdict ``regressed`` or ``improved`` are the flagged changes. One row per flagged
test: the run's date and config, the cell, parameter and metric, RUN/BASE ratio with its
CI, the BH-adjusted p, the commit where the change appeared (the run's) and the one before
(the compared run's), and links to both runs' reports and to the comparison (the run
report's comparison section).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from gradprobe.analysis.compare.compare_output import read_comparison
from gradprobe.analysis.report.headline import fmt_ci, fmt_p
from gradprobe.analysis.report.pages import render_page
from gradprobe.analysis.report.variants import variant_name
from gradprobe.bench.store.manifest import read_manifest
from gradprobe.bench.store.run_dir import COMPARE_JSON, start_order
from gradprobe.core.errors import UserError

FLAGGED = ("regressed", "improved")


def side_name(side: dict) -> str:
    """A comparison side's name: its directory's name (a run or a baseline), else its
    label."""
    path = side.get("path")
    return Path(path).name if path else str(side.get("label", "?"))


def base_commit(side: dict) -> str:
    """The measured commit of a comparison side that is not a published run: from its
    manifest where its path still holds one (compare.json records gradprobe's commit)."""
    try:
        return read_manifest(side["path"]).measured_commit or "unknown"
    except (UserError, KeyError, TypeError):
        return side.get("git_commit") or "unknown"


def _href(name: str, known: set[str], prefix: str) -> str | None:
    return f"{prefix}runs/{quote(name)}/index.html" if name in known else None


def cell_name(test: dict, axes: list[str], *, switched: bool) -> str:
    """A tested cell by its ``axes`` (``depth 3, width 8, plain``): the ``residual`` flag in
    the report's words (:mod:`gradprobe.analysis.report.variants`)."""
    return ", ".join(variant_name(test[a], switched=switched) if a == "residual"
                     else f"{a} {test[a]}" for a in axes if a in test) or "(one cell)"


def flagged_rows(runs, *, prefix: str = "") -> list[dict]:
    """Rows of the page for ``runs`` (site ``RunEntry`` objects, any order), newest run
    first, regressions before improvements within a run. ``prefix`` leads every link
    (``../`` from a page one folder deep)."""
    known = {r.name for r in runs}
    commits = {r.name: r.commit for r in runs}
    rows = []
    for run in sorted(runs, key=lambda r: start_order(r.started_at, r.path), reverse=True):
        data = read_comparison(run.path / COMPARE_JSON)
        if not data:
            continue
        base = data.get("base") or {}
        label_axes = (data.get("cells") or {}).get("label_axes") or []
        tests = [t for t in data.get("tests", []) if isinstance(t, dict)
                 and t.get("verdict") in FLAGGED]
        tests.sort(key=lambda t: (FLAGGED.index(t["verdict"]), t.get("p_adjusted") or 1))
        report = _href(run.name, known, prefix)
        for test in tests:
            rows.append({
                "date": run.started_at[:16].replace("T", " "), "config": run.config,
                "cell": cell_name(test, label_axes, switched=run.residual_switched),
                "param": test.get("param"), "metric": test.get("metric"),
                "verdict": test["verdict"],
                "ratio": fmt_ci(test["ratio"], test["ci_low"], test["ci_high"])
                if test.get("ratio") is not None else "n/a",
                "p": fmt_p(test["p_adjusted"]) if test.get("p_adjusted") is not None
                else "n/a",
                "commit": (run.commit or "unknown")[:10], "run": run.name,
                "run_href": report, "base": side_name(base),
                "base_commit": (commits.get(side_name(base)) or base_commit(base))[:10],
                "base_href": _href(side_name(base), known, prefix),
                "comparison_href": f"{report}#comparison" if report else None})
    return rows


def render_regressions(runs, *, links: dict[str, str]) -> str:
    """The page as an HTML string; ``links``: navigation, title to relative URL."""
    rows = flagged_rows(runs, prefix="../")
    compared = sum(1 for r in runs if (r.path / COMPARE_JSON).is_file())
    return render_page("regressions.html.j2", rows=rows, links=links, compared=compared,
                       n_runs=len(runs))
