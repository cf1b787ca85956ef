"""``gradprobe report RUN_DIR``: one self-contained HTML file.

Figures are inline SVG, styles are inline, nothing is fetched from the network, so the file
can be mailed, archived or served as a static page. Every string that comes from a config
or a file goes through Jinja2's autoescaping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup, escape

from analysis import figures as fig
from analysis.analyze import Analysis, analyze_run, load_analysis
from analysis.findings import findings
from analysis.headline import (
    describe_selection,
    fmt,
    format_headline,
    headline_rows,
    headline_selection,
    headline_table,
    select,
)
from analysis.series import varying_axes
from analysis.training_report import training_context
from bench.atomic_files import write_text_atomic
from bench.errors import UserError
from bench.loader import parse_config
from bench.manifest import read_manifest
from bench.records import read_records

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Headline:
    selection: dict[str, Any]
    metric: str
    title: str
    table: pd.DataFrame
    header: list[str]
    rows: list[list[str]]
    text: str


def headline_for(analysis: Analysis, manifest: dict | None = None) -> Headline:
    """The headline table of an analysed run (configuration from ``[report]``)."""
    manifest = manifest or read_manifest(analysis.run_dir)
    config = parse_config(manifest["config"]["text"], source=manifest["config"]["source"])
    metric = config.report.metric
    selection = headline_selection(manifest, analysis.summary)
    table = headline_table(analysis, selection, metric)
    where = describe_selection(selection, varying_axes(analysis.summary))
    title = f"{metric} per layer, {where}"
    header, rows = headline_rows(table)
    return Headline(selection, metric, title, table, header, rows,
                    format_headline(table, title))


def _figure(key: str, title: str, figure, caption: str, alt: str, data) -> fig.Figure | None:
    if figure is None:
        return None
    svg = fig.to_svg(figure).replace("<svg ", f'<svg role="img" aria-label="{escape(alt)}" ', 1)
    return fig.Figure(key, title, svg, caption, alt, data)


def build_figures(analysis: Analysis, headline: Headline) -> list[fig.Figure]:
    """The report's figures, skipping those the run's axes cannot support."""
    metric, sel = headline.metric, headline.selection
    summary, effects, trends = analysis.summary, analysis.effects, analysis.trends
    width_sel = {k: v for k, v in sel.items() if k != "depth"}
    profile = select(summary, width_sel)
    others = {k: v for k, v in sel.items() if k not in ("depth", "width")}
    out = [
        _figure("profile", "Per-layer gradient profile", fig.layer_profile(profile, metric),
                f"Geometric mean of {metric} per layer with its 95% bootstrap CI, plain "
                "(blue) vs residual (orange), one panel per depth. Look for where the two "
                "curves separate and whether the first layers sit below the last.",
                f"Line plots of {metric} against layer index for each depth, plain and "
                "residual, on a log axis.", profile),
        _figure("heatmap", "Residual / plain ratio over depth and width",
                fig.ratio_heatmap(select(effects, others), metric) if not effects.empty
                else None,
                f"Paired residual/plain ratio of the first layer's {metric} (geometric mean "
                "over seeds); 'ns' marks ratios not significant at FDR 5%. Look at how the "
                "ratio grows with depth and whether width changes it.",
                "Heatmap of the log10 residual-to-plain gradient ratio, depth by width.",
                select(effects, others)),
        _figure("depth", "First-layer gradient against depth",
                fig.depth_trend(select(summary, others), select(trends, others)
                                if not trends.empty else trends, metric),
                f"First layer's {metric} against depth with 95% CIs; dashed lines are the "
                "fitted per-layer slopes (mean of per-seed fits). A straight line on this "
                "log axis is exponential decay or growth with depth.",
                f"Log-scale plot of first-layer {metric} against depth per width, with "
                "fitted lines.", select(summary, others)),
    ]
    seeds = _headline_seed_values(analysis, sel, metric)
    out.append(_figure("seeds", "Every seed of the headline configuration",
                       fig.seed_distribution(seeds, metric),
                       f"One point per seed of {metric} for each parameter of the headline "
                       "configuration, with boxes (quartiles). Zeros cannot be drawn on a log "
                       "axis and are counted in the findings instead.",
                       f"Strip and box plot of per-seed {metric} per parameter, plain and "
                       "residual.", seeds))
    return [f for f in out if f is not None]


def _headline_seed_values(analysis: Analysis, selection: dict, metric: str) -> pd.DataFrame:
    cells = select(analysis.summary, selection)["cell_id"].unique().tolist()
    columns = ["cell_id", "seed", "param", "layer", "kind", "residual", metric]
    return read_records(analysis.run_dir, columns=columns, cells=cells)


def render_report(analysis: Analysis, manifest: dict) -> str:
    """The report as an HTML string."""
    headline = headline_for(analysis, manifest)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    figures = build_figures(analysis, headline)
    return env.get_template("report.html.j2").render(
        manifest=manifest,
        config=manifest["config"],
        env=manifest["environment"],
        analysis=analysis.meta,
        headline=headline,
        findings=findings(analysis, headline.selection, headline.metric),
        figures=[{"key": f.key, "title": f.title, "svg": Markup(f.svg), "caption": f.caption,
                  "alt": f.alt} for f in figures],
        manifest_json=json.dumps({k: v for k, v in manifest.items() if k != "cells"},
                                 indent=2),
        n_cells=len(manifest["cells"]),
        axes=manifest.get("sweep_axes", []),
        **devices_context(analysis, manifest),
        **training_context(analysis, _config(manifest).report.target_loss),
        factory_models=factory_models(manifest),
    )


def _config(manifest: dict):
    return parse_config(manifest["config"]["text"], source=manifest["config"]["source"])


def factory_models(manifest: dict) -> list[dict[str, Any]]:
    """Per factory: its configurations and how their seeds were batched (manifest
    ``batching``: ``vmap``, or ``loop`` and why)."""
    batching = manifest.get("batching") or {}
    models: dict[str, dict[str, Any]] = {}
    for cell in manifest["cells"]:
        name = cell["axes"].get("factory")
        if not name:
            continue
        entry = models.setdefault(name, {"factory": name, "cells": 0, "modes": {},
                                         "notes": {}})
        entry["cells"] += 1
        how = batching.get(cell["cell_id"], {})
        mode = how.get("mode", "not recorded")
        entry["modes"][mode] = entry["modes"].get(mode, 0) + 1
        for note in [how.get("reason"), *how.get("notes", [])]:
            if note:
                entry["notes"][note] = None
    return [{**m, "modes": ", ".join(f"{k} ({v})" for k, v in m["modes"].items()),
             "notes": "; ".join(m["notes"]) or "-"} for m in models.values()]


def devices_context(analysis: Analysis, manifest: dict) -> dict[str, Any]:
    """Rows for the devices-and-cost section (templates/devices_section.html.j2)."""
    device_rows = [{"device_a": r.device_a, "device_b": r.device_b, "dtype": r.dtype,
                    "metric": r.metric, "n": r.n, "max_rel": fmt(r.max_rel_diff),
                    "median_rel": fmt(r.median_rel_diff), "expected": fmt(r.expected),
                    "within": r.within_expected} for r in analysis.devices.itertuples()]
    cost_rows = [{"device": r.device, "dtype": r.dtype, "variant": r.variant,
                  "cells": r.cells, "seeds": r.seeds, "compute": f"{r.compute_us_per_seed:.3g}",
                  "init": f"{r.init_us_per_seed:.3g}"} for r in analysis.cost.itertuples()]
    return {"skipped": manifest.get("skipped", []), "device_rows": device_rows,
            "cost_rows": cost_rows}


def write_report(run_dir: str | Path, *, out: str | Path | None = None,
                 analysis: Analysis | None = None) -> Path:
    """Render ``<run>/index.html`` (or ``out``), analysing the run first if needed."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if analysis is None:
        try:
            analysis = load_analysis(run_dir)
        except UserError:  # not analysed yet: do it now
            analysis = analyze_run(run_dir)
    path = Path(out) if out else run_dir / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, render_report(analysis, manifest))
