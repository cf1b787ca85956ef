"""The blog's table, with uncertainty: one row per layer of the headline configuration (per
role, for a large model of repeated blocks: :func:`role_rows`).

``layer | plain geometric mean [95% CI] | residual [95% CI] | ratio [95% CI] | adjusted p``

The headline configuration is ``[report] headline`` of the config (default: the blog's
depth 5, width 10 when the sweep has it); any axis it does not fix takes its first value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gradprobe.analysis.analyze import Analysis
from gradprobe.analysis.report.param_groups import (
    MANY_PARAMS,
    is_blocked,
    numbered_layers,
    with_blocks,
)
from gradprobe.analysis.report.variants import variant_labels
from gradprobe.analysis.stats.series import axis_columns, varying_axes
from gradprobe.bench.store.manifest import Manifest, read_manifest
from gradprobe.core.errors import UserError
from gradprobe.core.json_output import plain

BLOG_CELL = {"depth": 5, "width": 10}
VARIANTS = {False: "plain", True: "residual"}


def headline_selection(manifest: Manifest, summary: pd.DataFrame) -> dict[str, Any]:
    """Axis values (all but ``residual``) that pick the headline cell out of ``summary``."""
    config = manifest.experiment
    wanted = dict(config.report.headline or BLOG_CELL)
    axes = [c for c in axis_columns(summary) if c != "residual"]
    rows = summary
    for key, value in wanted.items():
        if key in rows.columns and (rows[key] == value).any():
            rows = rows[rows[key] == value]
        elif config.report.headline:
            raise UserError(f"[report] headline {key} = {value!r}: no such cell in this run")
    first = rows.iloc[0]
    return {axis: first[axis] for axis in axes}


def select(frame: pd.DataFrame, selection: dict[str, Any]) -> pd.DataFrame:
    """Rows of ``frame`` matching every ``selection`` item on the columns it has."""
    mask = pd.Series(True, index=frame.index)
    for key, value in selection.items():
        if key in frame.columns:
            mask &= frame[key] == value
    return frame[mask]


def headline_table(analysis: Analysis, selection: dict[str, Any], metric: str) -> pd.DataFrame:
    """Per parameter of the headline cell: geometric mean and CI for each variant, the
    paired ratio with CI and adjusted p. Columns: ``param``, ``layer``, then for each
    variant ``<v>``, ``<v>_low``, ``<v>_high``, ``<v>_n``, and ``ratio``, ``ratio_low``,
    ``ratio_high``, ``n_pairs``, ``p_adjusted``, ``significant``."""
    summary = select(analysis.summary, selection)
    summary = summary[summary["metric"] == metric]
    table = summary.drop_duplicates("param")[["param", "layer"]].sort_values("layer")
    for flag, name in VARIANTS.items():
        part = summary[summary["residual"] == flag] if "residual" in summary else summary
        part = part.set_index("param")
        if part.empty:
            continue
        table[name] = table["param"].map(part["geo_mean"])
        table[f"{name}_low"] = table["param"].map(part["ci_low"])
        table[f"{name}_high"] = table["param"].map(part["ci_high"])
        table[f"{name}_n"] = table["param"].map(part["n_used"])
    effects = select(analysis.effects, selection) if not analysis.effects.empty else None
    if effects is not None and not effects.empty:
        effects = effects[effects["metric"] == metric].set_index("param")
        for column, source in (("ratio", "ratio"), ("ratio_low", "ci_low"),
                               ("ratio_high", "ci_high"), ("n_pairs", "n_pairs"),
                               ("p_adjusted", "p_adjusted"), ("significant", "significant")):
            table[column] = table["param"].map(effects[source])
    return table.reset_index(drop=True)


def fmt(value: float) -> str:
    """Three significant digits, scientific where that is shorter."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == 0:
        return "0"
    return f"{value:.3g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.2e}"


def fmt_ci(point: float, low: float, high: float) -> str:
    if isinstance(point, float) and math.isnan(point):
        return "n/a"
    return f"{fmt(point)} [{fmt(low)}, {fmt(high)}]"


def fmt_p(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"


def headline_rows(table: pd.DataFrame, labels: dict[str, str] | None = None
                  ) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells, shared by the terminal and the HTML report; ``labels``
    names the variants in the header (:func:`.variants.variant_labels`)."""
    labels = labels or {}
    header = ["layer" if numbered_layers(table["param"]) else "parameter"]
    variants = [v for v in VARIANTS.values() if v in table]
    header += [f"{labels.get(v, v)} [95% CI]" for v in variants]
    if "ratio" in table:
        header += ["residual/plain [95% CI]", "adjusted p"]
    rows = []
    for _, row in table.iterrows():
        cells = [row["param"]]
        cells += [fmt_ci(row[v], row[f"{v}_low"], row[f"{v}_high"]) for v in variants]
        if "ratio" in table:
            p = fmt_p(row["p_adjusted"])
            if not row["significant"]:
                p += " (not significant)"
            cells += [fmt_ci(row["ratio"], row["ratio_low"], row["ratio_high"]), p]
        rows.append(cells)
    return header, rows


def headline_sort_values(table: pd.DataFrame) -> list[list[object]]:
    """Per row of :func:`headline_rows`, the unrounded number behind each cell (the layer
    index for the first), so that an HTML table sorts by the value, not its rounding."""
    variants = [v for v in VARIANTS.values() if v in table]
    columns = ["layer", *variants] + (["ratio", "p_adjusted"] if "ratio" in table else [])
    return [[row[c] for c in columns] for _, row in table.iterrows()]


def headline_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The table as JSON-ready dicts at full float64 precision (NaN -> None, numpy scalars
    -> Python)."""
    return plain(table.to_dict(orient="records"))


CI_CELL = re.compile(r"^(\S+) \[(\S+), (\S+)\]$")


def align_ci_column(cells: list[str]) -> list[str]:
    """Pad ``point [low, high]`` cells so points, brackets and bounds line up; other cells
    (``n/a``) are right-aligned to the same width."""
    parts = [CI_CELL.match(c) for c in cells]
    found = [p.groups() for p in parts if p]
    if not found:
        return cells
    widths = [max(len(g[i]) for g in found) for i in range(3)]
    out = [f"{p[1]:>{widths[0]}} [{p[2]:>{widths[1]}}, {p[3]:>{widths[2]}}]" if p else c
           for c, p in zip(cells, parts, strict=True)]
    width = max(len(c) for c in out)
    return [c.rjust(width) for c in out]


def format_headline(table: pd.DataFrame, title: str,
                    labels: dict[str, str] | None = None) -> str:
    """The headline table as aligned plain text: the layer column left-aligned, every CI
    column aligned on its brackets, the p-value column right-aligned."""
    header, rows = headline_rows(table, labels)
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in header]
    columns = [columns[0]] + [align_ci_column(c) for c in columns[1:]]
    widths = [max([len(h), *map(len, c)]) for h, c in zip(header, columns, strict=True)]

    def line(cells: list[str]) -> str:
        padded = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in
                                                  zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(padded).rstrip()
    lines = [title, line(header), "  ".join("-" * w for w in widths)]
    lines += [line(list(r)) for r in zip(*columns, strict=True)]
    return "\n".join(lines)


def describe_selection(selection: dict[str, Any], varying: list[str]) -> str:
    """``depth 5, width 10`` for the axes that vary in the run."""
    shown = [k for k in selection if k in varying] or list(selection)[:2]
    return ", ".join(f"{k} {selection[k]}" for k in shown)


@dataclass(frozen=True)
class Headline:
    """The headline table of a run: ``table`` as :func:`headline_table`, ``header`` and
    ``rows`` as :func:`headline_rows`, ``text`` as :func:`format_headline`."""

    selection: dict[str, Any]
    metric: str
    where: str  # the headline cell in words: "depth 5, width 10"
    title: str
    table: pd.DataFrame  # every parameter (CSV, --json)
    header: list[str]
    rows: list[list[str]]
    text: str
    shown: pd.DataFrame | None = None  # the rows of ``rows``: ``table``, or its roles
    by_role: bool = False  # one row per role (a large model of repeated blocks)

    def as_json(self) -> dict[str, Any]:
        """For ``--json``: the cell, metric and every number of the table, unrounded."""
        return {"metric": self.metric, "where": self.where, "title": self.title,
                "selection": self.selection, "rows": headline_records(self.table)}


def headline_for(analysis: Analysis, manifest: Manifest | None = None) -> Headline:
    """The headline table of an analysed run (configuration from ``[report]``)."""
    manifest = manifest or read_manifest(analysis.run_dir)
    config = manifest.experiment
    metric = config.report.metric
    selection = headline_selection(manifest, analysis.summary)
    table = headline_table(analysis, selection, metric)
    where = describe_selection(selection, varying_axes(analysis.summary))
    by_role = len(table) > MANY_PARAMS and is_blocked(table["param"])
    shown = role_rows(table) if by_role else table
    title = (f"{metric} per role (input-side block and parameters outside blocks), {where}"
             if by_role else f"{metric} per layer, {where}")
    labels = variant_labels(manifest)
    header, rows = headline_rows(shown, labels)
    return Headline(selection, metric, where, title, table, header, rows,
                    format_headline(shown, title, labels), shown, by_role)


def role_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a model of repeated blocks that name each role once: the input-side
    block's parameters and those outside blocks (the CSV keeps every parameter)."""
    grouped = with_blocks(table)
    keep = grouped["block"].isna() | (grouped["block"] == grouped["block"].min())
    return table[keep.to_numpy()].reset_index(drop=True)
