"""A :class:`~gradprobe.analysis.compare.comparison.Comparison` as a terminal table, ``compare.md``
and
``compare.json``.

``compare.json`` (``compare_version`` 1) is what other stages read (the HTML report, CI
scripts): ``base``/``run`` (path, kind, config, seeds, torch, git commit), ``settings``,
``rule``, ``config_differences`` and ``environment_differences`` (``[{key, base, run}]``),
``cells`` (``matched``, ``match_key``, ``ignored_keys``, ``base_only``, ``run_only``),
``pairing`` (per matched cell), ``counts`` per verdict, ``gate`` (``pass``/``fail``) and
``tests``: one object per test with the columns of :attr:`Comparison.tests` (``null`` for
NaN). ``compare.md`` is GitHub-flavoured Markdown for ``$GITHUB_STEP_SUMMARY``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from gradprobe.analysis.compare.comparison import PRIMARY_METRIC, Comparison
from gradprobe.bench.store.manifest import utc_now
from gradprobe.bench.store.run_dir import COMPARE_JSON, COMPARE_MD
from gradprobe.core.atomic_files import ensure_directory, write_json_atomic, write_text_atomic
from gradprobe.core.documents import read_versioned_json

COMPARE_VERSION = 1
JSON_FILE, MARKDOWN_FILE = COMPARE_JSON, COMPARE_MD
TEST_COLUMNS = ["cell_base", "cell_run", "param", "layer", "kind", "metric", "test", "pairing",
                "n_base", "n_run", "n_used", "ratio", "ci_low", "ci_high", "base_zero",
                "run_zero", "zero_discordant", "base_nonfinite", "run_nonfinite", "p_value",
                "p_adjusted", "family", "gate", "prefer", "verdict", "reason"]
ORDER = {"missing": 0, "regressed": 1, "improved": 2, "inconclusive": 3, "unchanged": 4,
         "structurally zero": 5}


def rule_text(comparison: Comparison) -> str:
    s = comparison.settings
    return (f"flagged when the Benjamini-Hochberg adjusted p < {s.alpha:g} and the whole "
            f"{s.confidence:.0%} CI of RUN/BASE lies outside [{1 / s.tolerance:.4g}, "
            f"{s.tolerance:.4g}]; the gate judges {PRIMARY_METRIC} (one family: its ratio and "
            "zero-fraction tests per parameter), missing cells or parameters, and values "
            "turning non-finite; other metrics are secondary")


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The JSON document described in the module docstring."""
    c, s = comparison, comparison.settings
    label = c.cells.label_axes()
    tests = ordered(c.tests)[[*label, *TEST_COLUMNS]]
    pairing = c.pairing[[*label, "cell_base", "cell_run", "paired", "n_common",
                         "n_mismatched", "note"]]
    return {
        "compare_version": COMPARE_VERSION,
        "created_at": utc_now(),
        "base": c.base,
        "run": c.run,
        "settings": {"alpha": s.alpha, "tolerance": s.tolerance, "n_resamples": s.n_resamples,
                     "confidence": s.confidence, "seed": s.seed, "prefer": dict(s.prefer),
                     "adjust": "bh"},
        "rule": rule_text(c),
        "config_differences": c.config_differences,
        "environment_differences": c.environment_differences,
        "cells": {"matched": len(c.cells.pairs), "match_key": c.cells.key,
                  "ignored_keys": c.cells.ignored, "label_axes": label,
                  "base_only": _records(c.cells.base_only),
                  "run_only": _records(c.cells.run_only)},
        "pairing": _records(pairing),
        "counts": c.counts(),
        "gate_counts": c.counts(gate_only=True),
        "gate": "fail" if c.regressed else "pass",
        "tests": _records(tests),
    }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", double_precision=15))


def ordered(tests: pd.DataFrame) -> pd.DataFrame:
    """Missing first, then regressed, improved, inconclusive, unchanged; gate tests before
    secondary ones, by adjusted p within each."""
    key = tests["verdict"].map(ORDER)
    return tests.assign(_order=key, _gate=~tests["gate"].astype(bool)) \
        .sort_values(["_order", "_gate", "p_adjusted"], kind="stable") \
        .drop(columns=["_order", "_gate"]).reset_index(drop=True)


def write_outputs(comparison: Comparison, out_dir: str | Path) -> list[Path]:
    """Write ``compare.json`` and ``compare.md`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    ensure_directory(out_dir)
    return [write_json_atomic(out_dir / JSON_FILE, to_json(comparison)),
            write_text_atomic(out_dir / MARKDOWN_FILE, format_markdown(comparison))]


def read_comparison(path: str | Path) -> dict[str, Any] | None:
    """``compare.json`` of a run directory (or the file itself), version-checked; None when
    there is none."""
    path = Path(path)
    path = path / JSON_FILE if path.is_dir() else path
    if not path.is_file():
        return None
    return read_versioned_json(path, key="compare_version", current=COMPARE_VERSION,
                               what="comparison", fix="run `gradprobe compare` again")


def fmt_ratio(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.3e}"


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"


def _side_line(side: dict[str, Any]) -> str:
    commit = (side.get("git_commit") or "unknown")[:10]
    return (f"{side['path']} ({side['kind']}; config {side['config']}, {side['n_seeds']} "
            f"seeds {side['seeds']}, torch {side['torch']}, commit {commit})")


def summary_lines(comparison: Comparison) -> list[str]:
    """Header shared by the terminal and Markdown: sides, differences, cells, pairing, rule."""
    c = comparison
    lines = [f"BASE {_side_line(c.base)}", f"RUN  {_side_line(c.run)}"]
    for title, diffs in (("config", c.config_differences),
                         ("environment", c.environment_differences)):
        if diffs:
            shown = "; ".join(f"{d['key']}: {d['base']} -> {d['run']}" for d in diffs)
            lines.append(f"{title} differences: {shown}")
        else:
            lines.append(f"{title} differences: none")
    lines.append(f"cells: {len(c.cells.pairs)} matched on their sweep axes, "
                 f"{len(c.cells.base_only)} only in BASE, {len(c.cells.run_only)} only in RUN")
    for side, frame in (("BASE", c.cells.base_only), ("RUN", c.cells.run_only)):
        for _, row in frame.head(10).iterrows():
            lines.append(f"  only in {side}: {cell_label(row, _differing(frame, c))}")
    for note, count in c.pairing["note"].value_counts().items():
        lines.append(f"pairing: {count} cells {note}")
    lines.append(f"rule: {rule_text(c)}")
    counts, gate = c.counts(), c.counts(gate_only=True)
    lines.append("verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) +
                 f" (of {len(c.tests)} tests); gate tests: " +
                 ", ".join(f"{n} {v}" for v, n in gate.items() if n) +
                 f" (of {int(c.tests['gate'].sum())})")
    return lines


def _differing(frame: pd.DataFrame, comparison: Comparison) -> list[str]:
    """Axes worth naming for unmatched cells: the label axes plus any key that varies."""
    axes = comparison.cells.label_axes()
    return axes + [a for a in comparison.cells.key if a not in axes and
                   frame[a].nunique() > 1] or comparison.cells.key[:3]


def cell_label(row, axes: list[str]) -> str:
    return " ".join(f"{a}={_value(row[a])}" for a in axes) or "(single cell)"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table_rows(comparison: Comparison, *, everything: bool) -> list[list[str]]:
    """One formatted row per test worth showing (all with ``everything``)."""
    tests = ordered(comparison.tests)
    if not everything:
        tests = tests[~tests["verdict"].isin(["unchanged", "structurally zero"])]
    axes = comparison.cells.label_axes()
    rows = []
    for _, t in tests.iterrows():
        if t["test"] == "ratio":
            effect = (f"{fmt_ratio(t['ratio'])} [{fmt_ratio(t['ci_low'])}, "
                      f"{fmt_ratio(t['ci_high'])}]")
        elif t["test"] == "presence" or t["verdict"] == "structurally zero":
            effect = t["reason"]
        else:
            effect = f"zeros {t['base_zero']}/{t['n_base']} -> {t['run_zero']}/{t['n_run']}"
        metric = t["metric"] if t["gate"] else f"{t['metric']} (secondary)"
        rows.append([cell_label(t, axes), t["param"], metric, effect,
                     fmt_p(t["p_adjusted"]), t["pairing"], t["verdict"]])
    return rows


HEADER = ["cell", "param", "metric", "RUN/BASE [95% CI]", "adj. p", "pairing", "verdict"]


def format_terminal(comparison: Comparison, *, limit: int = 40,
                    everything: bool = False) -> str:
    """Summary lines, then an aligned table of the tests that are not ``unchanged``."""
    lines = summary_lines(comparison)
    rows = table_rows(comparison, everything=everything)
    if rows:
        shown = rows[:limit]
        widths = [max(len(str(x)) for x in col) for col in zip(HEADER, *shown, strict=True)]
        lines += ["", "  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)),
                  "  ".join("-" * w for w in widths)]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))
                  for r in shown]
        if len(rows) > limit:
            lines.append(f"... {len(rows) - limit} more rows in compare.json")
    lines += ["", gate_line(comparison)]
    return "\n".join(lines)


def gate_line(comparison: Comparison) -> str:
    gate = comparison.counts(gate_only=True)
    if comparison.regressed:
        failed = " and ".join(f"{gate[v]} {v}" for v in ("regressed", "missing") if gate[v])
        return f"FAIL: {failed} (exit code 1)"
    secondary = comparison.counts()["regressed"]
    note = f" (secondary metrics: {secondary} regressed, not gating)" if secondary else ""
    return f"PASS: nothing regressed{note}"


def format_markdown(comparison: Comparison, *, limit: int = 100) -> str:
    """``compare.md``: heading with the gate result, summary list, table of the tests that
    are not ``unchanged`` (at most ``limit``)."""
    icon = "❌" if comparison.regressed else "✅"
    lines = [f"## {icon} gradprobe compare: {gate_line(comparison)}", ""]
    lines += [f"- {_escape(line)}" for line in summary_lines(comparison)]
    rows = table_rows(comparison, everything=False)
    if rows:
        lines += ["", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(_escape(str(c)) for c in r) + " |" for r in rows[:limit]]
        if len(rows) > limit:
            lines.append(f"\n{len(rows) - limit} more rows in compare.json")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def compare_dirs(base: str | Path, run: str | Path, *, alpha: float | None = None,
                 tolerance: float | None = None, n_resamples: int | None = None,
                 seed: int = 0, out: str | Path | None = None,
                 write: bool = True) -> tuple[Comparison, list[Path]]:
    """Compare two run or baseline directories; write ``compare.json``/``compare.md`` into
    ``out``, or into RUN when it is a run directory (never into a baseline, which is meant to
    stay as committed). Returns the comparison and the files written."""
    from gradprobe.analysis.compare.comparison import compare_sides, settings_for
    from gradprobe.analysis.compare.sides import load_side

    base_side, run_side = load_side(base, "BASE"), load_side(run, "RUN")
    settings = settings_for(run_side, alpha=alpha, tolerance=tolerance,
                            n_resamples=n_resamples, seed=seed)
    comparison = compare_sides(base_side, run_side, settings)
    target = out if out is not None else (run if run_side.kind == "run" else None)
    written = write_outputs(comparison, target) if write and target is not None else []
    return comparison, written
