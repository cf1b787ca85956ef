"""``gradprobe history --html FILE``: the trends as one self-contained HTML page.

One small panel per series (geometric mean over seeds with its 95% CI against the run
index, log axis), dashed lines where a change point starts a new level; a table of the
runs (date, commit, versions) and one of the change points. Inline SVG, no network.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import jinja2
import matplotlib.pyplot as plt
import numpy as np
from markupsafe import Markup

from gradprobe.analysis.history.run_history import Trend
from gradprobe.analysis.report.figures import METRIC_LABELS
from gradprobe.analysis.report.plot_style import to_svg
from gradprobe.core.atomic_files import ensure_directory, write_text_atomic

TEMPLATES = Path(__file__).parent / "templates"
MAX_PANELS = 24  # beyond this the page is unreadable; narrow the selection instead
STEP_COLOR, LINE_COLOR = "#D55E00", "#0072B2"


def trend_figure(items: list[Trend]) -> plt.Figure:
    """Panels of geo mean with CI over runs, change points marked."""
    shown = items[:MAX_PANELS]
    columns = min(3, len(shown))
    rows = math.ceil(len(shown) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.4 * rows),
                             squeeze=False)
    for ax, trend in zip(axes.flat, shown, strict=False):
        runs = trend.runs
        x = np.arange(len(runs))
        y = runs["geo_mean"].to_numpy()
        error = np.vstack([y - runs["ci_low"].to_numpy(), runs["ci_high"].to_numpy() - y])
        ax.errorbar(x, y, yerr=error, marker="o", ms=3, lw=1, capsize=2, color=LINE_COLOR)
        for step in trend.steps:
            ax.axvline(step.index - 0.5, ls="--", lw=1, color=STEP_COLOR)
        ax.set_yscale("log")
        ax.set_title("\n".join(textwrap.wrap(trend.label, 40)), fontsize=7)
        ax.set_xlabel("run (oldest first)")
        metric = trend.runs["metric"].iloc[0] if len(trend.runs) else ""
        ax.set_ylabel(METRIC_LABELS.get(metric, metric), fontsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def render_history(items: list[Trend]) -> str:
    """The page as an HTML string."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    runs = items[0].runs if items else None
    steps = [{"series": t.label, "run": s.index, "commit": str(t.runs["git_commit"][s.index]),
              "torch": t.runs["torch_version"][s.index], "ratio": f"{s.ratio:.4g}"}
             for t in items for s in t.steps]
    svg = to_svg(trend_figure(items), "history") if items else ""
    svg = svg.replace("<svg ", '<svg role="img" aria-label="Trend of each selected series '
                      'over runs, change points dashed" ', 1)
    return env.get_template("history.html.j2").render(
        n_series=len(items), shown=min(len(items), MAX_PANELS), svg=Markup(svg),
        steps=steps, runs=[] if runs is None else runs.to_dict(orient="records"))


def write_history_page(path: str | Path, items: list[Trend]) -> Path:
    path = Path(path)
    ensure_directory(path.parent)
    return write_text_atomic(path, render_history(items))
