"""The history page (``gradprobe history --html FILE``, ``site/history/index.html``): every
series of the history over commits, as asv's graphs.

A selector of config, cell, parameter and metric picks one series; the page draws it over
the commits (short hash on the axis, date and run on hover), plain and residual in the
report's colours and models *as built* (a factory that takes no ``residual``: its skip
connections are its own, :mod:`gradprobe.analysis.report.variants`) in a neutral grey, with
95% CIs and dashed lines at change points. The headline cell,
metric and parameter are selected first. Every series is in the page (no cap), and the
selection is the URL fragment (``#config=..&cell=..&param=..&metric=..``), so each series
has a link. Tables list every change point with the commits on each side, and the runs.

The graph is drawn in the browser (``templates/history.js``) from the page's JSON data,
since a static page cannot ask matplotlib for the series a reader picks; values are kept
to 4 significant digits, which bounds what each run adds (full precision stays in
``reports/history/``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gradprobe.analysis.history.changepoints import detect_steps
from gradprobe.analysis.history.run_history import series_order
from gradprobe.analysis.report.figures import METRIC_LABELS
from gradprobe.analysis.report.pages import json_script, render_page
from gradprobe.analysis.report.variants import AS_BUILT, variant_name
from gradprobe.analysis.stats.series import axis_columns, varying_axes
from gradprobe.core.atomic_files import ensure_directory, write_text_atomic

SCRIPTS = ("history.js",)
DIGITS = 4


def _round(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(f"{v:.{DIGITS}g}") for v in values]


def _variant(residual, switched: bool) -> str:
    """The series' variant in the report's words (``plain``, ``residual``, ``as built``),
    as its newest run said; "" where the history has no ``residual`` axis."""
    return variant_name(bool(residual), switched=bool(switched)) \
        if residual in (True, False) else ""


def page_runs(history: pd.DataFrame, run_names: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per run in commit order: ``run_id``, ``commit`` (full hash or
    ``unknown``), ``date`` (commit date, else run date; ``YYYY-MM-DD``), ``dirty``,
    ``config``, ``name`` (the run directory's name where known, else the run id)."""
    runs = history.drop_duplicates("run_id")
    names = run_names or {}
    return pd.DataFrame({
        "run_id": runs["run_id"],
        "commit": runs["git_commit"].fillna("unknown").astype(str),
        "date": runs["commit_date"].fillna(runs["run_date"]).astype(str).str[:10],
        "dirty": runs["git_dirty"].fillna(False).astype(bool),
        "config": runs["config_name"],
        "name": [names.get(r, r) for r in runs["run_id"]]}).reset_index(drop=True)


def page_data(history: pd.DataFrame, *, tolerance: float,
              run_names: dict[str, str] | None = None) -> tuple[dict, list[dict]]:
    """The page's JSON (``runs``; ``series`` with ``config``, ``cell``, ``variant``
    (:func:`_variant`), ``param``, ``metric``, ``x`` (run positions), ``y``, ``lo``,
    ``hi``, ``steps``) and the change points as table rows.

    Series are contiguous slices of the rows sorted by :func:`series_order` (a site's
    history has thousands; a DataFrame per series would take most of a publish)."""
    runs = page_runs(history, run_names)
    position = pd.Series(range(len(runs)), index=runs["run_id"])
    rows = history[history["log10_mean"].notna()]
    keys = ["config_name", *axis_columns(rows), "param", "metric"]
    rows = series_order(rows, keys).reset_index(drop=True)
    # A cell is named by the axes that vary within its config (residual is the variant).
    named = {config: [c for c in varying_axes(part) if c != "residual"]
             for config, part in rows.groupby("config_name")}
    x = position[rows["run_id"]].to_numpy()
    y, lo, hi = (rows[c].to_numpy(dtype=np.float64) for c in ("geo_mean", "ci_low", "ci_high"))
    levels = rows["log10_mean"].to_numpy(dtype=np.float64)
    switched = rows["residual_switched"].to_numpy(dtype=bool)
    groups = rows.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    bounds = [0, *np.flatnonzero(np.diff(groups)) + 1, len(rows)]
    heads = rows[keys].iloc[bounds[:-1]].to_dict(orient="records")
    series, changes = [], []
    for start, end, key in zip(bounds[:-1], bounds[1:], heads, strict=True):
        xs = x[start:end].tolist()
        steps = [{"before": xs[s.index - 1], "after": xs[s.index], "ratio": s.ratio}
                 for s in detect_steps(levels[start:end], tolerance=tolerance)]
        item = {"config": str(key["config_name"]),
                "cell": " ".join(f"{k}={key[k]}" for k in named[key["config_name"]])
                or "(one cell)",
                "variant": _variant(key.get("residual"), switched[end - 1]),
                "param": str(key["param"]),
                "metric": str(key["metric"]), "x": xs, "y": _round(y[start:end]),
                "lo": _round(lo[start:end]), "hi": _round(hi[start:end]), "steps": steps}
        series.append(item)
        changes += [{**item, "ratio": f"{s['ratio']:.4g}", "before": runs.iloc[s["before"]],
                     "after": runs.iloc[s["after"]]} for s in steps]
    data = {"runs": runs[["commit", "date", "dirty", "name"]].to_dict(orient="records"),
            "series": series, "metric_labels": dict(METRIC_LABELS)}
    return data, changes


def render_history(history: pd.DataFrame, *, tolerance: float,
                   run_names: dict[str, str] | None = None,
                   links: dict[str, str] | None = None) -> str:
    """The page as an HTML string. ``history``: rows as :func:`read_history` returns them
    (any subset); ``links``: navigation, title to relative URL (the site's index and
    regressions page)."""
    data, changes = page_data(history, tolerance=tolerance, run_names=run_names)
    variants = {s["variant"] for s in data["series"]}
    return render_page("history.html.j2", scripts=SCRIPTS, data=json_script(data),
                       n_series=len(data["series"]), changes=changes,
                       switched=bool(variants & {"plain", "residual"}),
                       as_built=AS_BUILT in variants,
                       runs=page_runs(history, run_names).to_dict(orient="records"),
                       links=links or {})


def write_history_page(path: str | Path, history: pd.DataFrame, *, tolerance: float) -> Path:
    path = Path(path)
    ensure_directory(path.parent)
    return write_text_atomic(path, render_history(history, tolerance=tolerance))
