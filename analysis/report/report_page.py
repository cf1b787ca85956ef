"""``gradprobe report RUN_DIR``: one self-contained HTML file.

Figures are inline SVG (PNG data URIs when an SVG would be too big), styles and the one
script are inline, every download is a ``data:`` URI, and the page's Content-Security-Policy
forbids network requests, so the file can be mailed, archived or served as a static page.
Every string that comes from a config or a file goes through Jinja2's autoescaping; the
script reads the DOM and never interpolates strings (:mod:`gradprobe.analysis.report.pages`).
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path
from typing import Any

from gradprobe.analysis.analyze import (
    Analysis,
    AnalysisSettings,
    analyze_run,
    incomplete_note,
    is_stale,
    load_analysis,
)
from gradprobe.analysis.report.figure_selection import (
    build_figures,
    headline_figure,
    swept_values,
)
from gradprobe.analysis.report.findings import findings
from gradprobe.analysis.report.headline import (
    Headline,
    fmt,
    headline_for,
    headline_sort_values,
    select,
)
from gradprobe.analysis.report.histogram_figures import histogram_figures
from gradprobe.analysis.report.pages import csv_data_uri, render_page, sort_value
from gradprobe.analysis.report.plot_style import labelled_variants
from gradprobe.analysis.report.training_section import training_context
from gradprobe.analysis.report.variants import AS_BUILT, variant_labels
from gradprobe.bench.store.manifest import Manifest, read_manifest
from gradprobe.bench.store.run_dir import REPORT_FILE, RunDir, slug
from gradprobe.core.atomic_files import ensure_directory, write_text_atomic
from gradprobe.core.errors import UserError


def _header_cells(header: list[str], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Headline column names (variants under their ``labels``, :mod:`.variants`) with the
    variant whose colour swatch they carry."""
    return [{"text": text, "variant": next((v for v, label in labels.items()
                                            if text.startswith(f"{label} [")), None)}
            for text in header]


def _table_rows(headline: Headline) -> list[list[dict[str, Any]]]:
    """Each cell's text and the unrounded value it sorts by."""
    values = headline_sort_values(headline.shown if headline.shown is not None
                                  else headline.table)
    # No break inside "[low, high]" (a no-break space): a narrow column wraps the cell
    # between the point and its interval. The copy button turns it back into a space.
    return [[{"text": text.replace(", ", ",\u00a0"), "sort": sort_value(value)}
             for text, value in zip(row, keys, strict=True)]
            for row, keys in zip(headline.rows, values, strict=True)]


def download_name(run_dir: Path, what: str) -> str:
    """``<run>-<what>.csv`` with only portable characters."""
    return f"{slug(Path(run_dir).resolve().name, 'gradprobe')}-{what}.csv"


def _figure(f, analysis: Analysis) -> dict[str, Any]:
    return {"key": f.key, "title": f.title, "image": f.image, "caption": f.caption,
            "cells": f.cells, "csv": csv_data_uri(f.data), "rows": len(f.data),
            "csv_name": download_name(analysis.run_dir, f.key)}


def comparison_context(run_dir: Path) -> dict | None:
    """``compare.json`` of the run (written by ``gradprobe compare``) for the "Comparison
    with baseline" section, or None."""
    from gradprobe.analysis.compare.compare_output import read_comparison

    return read_comparison(run_dir)


def render_report(analysis: Analysis, manifest: Manifest) -> str:
    """The report as an HTML string."""
    headline = headline_for(analysis, manifest)
    labels = variant_labels(manifest)
    with labelled_variants(labels):
        figures = build_figures(analysis, headline.selection, headline.metric)
        top = headline_figure(analysis, headline.selection, headline.metric)
        distributions = histogram_figures(RunDir(analysis.run_dir), headline.selection,
                                          swept_values(analysis))
    return render_page(
        "report.html.j2",
        manifest=manifest,
        config=manifest.config,
        env=manifest.environment,
        analysis=analysis.meta,
        headline=headline,
        headline_header=_header_cells(headline.header, labels),
        variant_labels=labels,
        headline_rows=_table_rows(headline),
        headline_csv={"href": csv_data_uri(headline.table),
                      "name": download_name(analysis.run_dir, "headline")},
        findings=findings(analysis, headline.selection, headline.metric,
                          as_built=AS_BUILT in labels.values()),
        figures=[_figure(f, analysis) for f in figures],
        headline_figure=_figure(top, analysis) if top else None,
        histogram_figures=[_figure(f, analysis) for f in distributions],
        manifest_json=json.dumps(
            {k: v for k, v in manifest.document.items() if k != "cells"}, indent=2),
        n_cells=analysis.meta["run"].get("cells_found", len(manifest.cells)),
        incomplete=incomplete_note(analysis.run_dir, analysis.meta),
        axes=list(manifest.sweep_axes),
        **devices_context(analysis, manifest, labels),
        **(theory_context(analysis, headline.metric) if not manifest.experiment.model.factory
           else {"theory_rows": [], "spread_rows": []}),
        comparison=comparison_context(analysis.run_dir),
        **training_context(analysis, manifest.experiment.report.target_loss),
        factory_models=factory_models(manifest),
        model=model_context(analysis, manifest, headline.selection),
    )


def model_context(analysis: Analysis, manifest: Manifest,
                  selection: dict[str, Any]) -> dict[str, Any]:
    """What Methods says about the model actually run: for a factory, its name, the
    keyword arguments it was called with (non-default ``[model]`` keys and swept axes), the
    parameter count at the headline configuration and the loss; ``mlp`` says whether the
    MLP-only text (network description, theory, "Linear layers") applies."""
    from dataclasses import asdict, fields

    from gradprobe.bench.plan.config import ModelConfig

    config = manifest.experiment
    swept = dict(config.sweep.axes)
    defaults = {f.name: f.default for f in fields(ModelConfig)}
    kwargs = {"width": None, "depth": None, "seed": None}
    for key, value in asdict(config.model).items():
        if key in swept or (key != "factory" and value != defaults[key]) or key in kwargs:
            kwargs[key] = swept.get(key, [value])
    shown = [f"{k}=s" if k == "seed" else f"{k}={_one_of(v)}" for k, v in kwargs.items()]
    cell = select(analysis.summary, selection)
    cell = cell[cell["metric"] == cell["metric"].iloc[0]] if len(cell) else cell
    if "residual" in cell and cell["residual"].nunique() > 1:
        cell = cell[~cell["residual"].astype(bool)]
    return {"mlp": not config.model.factory, "factory": config.model.factory,
            "factory_call": ", ".join(shown), "loss": config.data.loss,
            "data_factory": config.data.data_factory,
            "target": config.data.target,
            "n_params": int(cell.drop_duplicates("param")["numel"].sum()),
            "n_tensors": int(cell["param"].nunique()),
            "depth_unit": "Linear layers" if not config.model.factory else "blocks"}


def _one_of(values: list) -> str:
    shown = [str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, str) else
             str(v) for v in values]
    return shown[0] if len(shown) == 1 else "{" + ", ".join(shown) + "}"


def factory_models(manifest: Manifest) -> list[dict[str, Any]]:
    """Per factory: its configurations and how their seeds were batched (manifest
    ``batching``: ``vmap``, or ``loop`` and why): ``factory``, ``cells``, ``modes``
    (``loop (3)``), ``notes`` (one line per reason, :func:`batching_reason`) and
    ``details`` (the reasons and notes as the manifest has them)."""
    batching = manifest.batching
    models: dict[str, dict[str, Any]] = {}
    for cell in manifest.cells:
        name = cell.axes.get("factory")
        if not name:
            continue
        entry = models.setdefault(name, {"factory": name, "cells": 0, "modes": {},
                                         "notes": {}, "details": {}})
        entry["cells"] += 1
        how = batching.get(cell.cell_id, {})
        mode = how.get("mode", "not recorded")
        entry["modes"][mode] = entry["modes"].get(mode, 0) + 1
        if how.get("reason"):
            entry["notes"][batching_reason(how["reason"])] = None
            entry["details"][how["reason"]] = None
        for note in how.get("notes", []):
            entry["notes"][note] = entry["details"][note] = None
    return [{**m, "modes": ", ".join(f"{k} ({v})" for k, v in m["modes"].items()),
             "notes": "; ".join(m["notes"]) or "-", "details": "\n".join(m["details"])}
            for m in models.values()]


REASON_CHARS = 100  # of the error's message in the report; manifest.json keeps it whole


def batching_reason(reason: str) -> str:
    """The report's one line for a manifest ``batching`` ``reason`` (the error that stopped
    vmap, ``"RuntimeError: <message>"``, one or many lines): ``vmap failed: <the first
    sentence of its first non-blank line, without exception-type or "vmap:" prefixes, at
    most REASON_CHARS>; measured seed by seed``."""
    line = next((text.strip() for text in reason.splitlines() if text.strip()), "")
    message = re.sub(r"^(?:[A-Za-z_][\w.]*: )+", "", line)
    message = re.split(r"(?<=[.!?])\s+(?=[A-Z])", message)[0].rstrip(".!? ")
    short = textwrap.shorten(message, REASON_CHARS, placeholder=" ...")
    return f"vmap failed: {short}; measured seed by seed" if short else \
        "vmap failed; measured seed by seed"


def duration(microseconds: float) -> str:
    """``16.2 ms``, ``850 µs``, ``1.5 s``: three significant digits in the unit that keeps
    the number between 1 and 1000 (not ``1.62e+04 us``)."""
    if microseconds is None or not math.isfinite(microseconds):
        return "n/a"
    for unit, scale in (("s", 1e6), ("ms", 1e3)):
        if abs(microseconds) >= scale:
            return f"{microseconds / scale:.3g} {unit}"
    return f"{microseconds:.3g} \u00b5s"


def devices_context(analysis: Analysis, manifest: Manifest,
                    labels: dict[str, str]) -> dict[str, Any]:
    """Rows for the devices-and-cost section (templates/devices_section.html.j2); variants
    under their ``labels`` (:mod:`.variants`)."""
    device_rows = [{"device_a": r.device_a, "device_b": r.device_b, "dtype": r.dtype,
                    "metric": r.metric, "n": r.n, "max_rel": fmt(r.max_rel_diff),
                    "median_rel": fmt(r.median_rel_diff), "expected": fmt(r.expected),
                    "within": r.within_expected} for r in analysis.devices.itertuples()]
    cost_rows = [{"device": r.device, "dtype": r.dtype, "variant": r.variant,
                  "variant_label": labels.get(r.variant, r.variant),
                  "cells": r.cells, "seeds": r.seeds, "compute": duration(r.compute_us_per_seed),
                  "init": duration(r.init_us_per_seed)} for r in analysis.cost.itertuples()]
    return {"skipped": list(manifest.skipped), "device_rows": device_rows,
            "cost_rows": cost_rows}


def theory_context(analysis: Analysis, metric: str) -> dict[str, Any]:
    """Rows for the theory section (templates/theory_section.html.j2)."""
    from gradprobe.analysis.stats.theory import TESTED_MIN_WIDTH, spread_fit

    trends = analysis.trends
    rows = []
    if not trends.empty and "predicted_slope" in trends:
        shown = trends[(trends["metric"] == metric) & trends["predicted_slope"].notna()]
        for _, r in shown.iterrows():
            where = ", ".join(f"{k} {r[k]}" for k in ("init", "width") if k in r)
            rows.append({"where": where, "role": r["role"],
                         "measured": f"{r['slope']:+.4f} [{r['ci_low']:+.4f}, "
                                     f"{r['ci_high']:+.4f}]",
                         "predicted": f"{r['predicted_slope']:+.4f}",
                         "inside": ("yes" if r["predicted_in_ci"] else "no")
                         + ("" if r.get("theory_tested", True) else " (untested width)"),
                         "seeds": int(r["n_used"])})
    spread = [{"init": r.init, "variant": "residual" if r.residual else "plain",
               "points": r.points, "kappa": f"{r.kappa:.3g} \u00b1 {r.kappa_se:.2g}",
               "r2": f"{r.r_squared:.2f}"} for r in spread_fit(analysis.summary).itertuples()]
    return {"theory_rows": rows, "spread_rows": spread, "theory_metric": metric,
            "theory_min_width": TESTED_MIN_WIDTH}


def write_report(run_dir: str | Path, *, out: str | Path | None = None,
                 analysis: Analysis | None = None,
                 settings: AnalysisSettings | None = None) -> Path:
    """Render ``<run>/index.html`` (or ``out``), analysing the run first if needed: when it
    has no analysis, when the run changed since, or when ``settings`` are given and differ
    from the analysis's."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    if analysis is None:
        wanted = settings or AnalysisSettings()
        try:
            analysis = load_analysis(run_dir)
        except UserError:  # not analysed yet: do it now
            analysis = analyze_run(run_dir, settings=wanted)
        if is_stale(run_dir, analysis.meta, manifest, settings):  # resumed, or other settings
            analysis = analyze_run(run_dir, settings=wanted)
    path = Path(out) if out else run_dir / REPORT_FILE
    ensure_directory(path.parent)
    return write_text_atomic(path, render_report(analysis, manifest))
