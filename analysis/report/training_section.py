"""The report's training section (``templates/training_section.html.j2``): its figures,
tables and summary sentence, from the training tables of
:mod:`gradprobe.analysis.stats.training_stats`.

The section appears only for runs with training records; every number comes with its
interval, and every comparison says whether it is significant after Benjamini-Hochberg.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from gradprobe.analysis.analyze import Analysis
from gradprobe.analysis.report.figure_selection import cells_shown, swept_values
from gradprobe.analysis.report.headline import fmt, fmt_ci, fmt_p
from gradprobe.analysis.report.plot_style import to_svg
from gradprobe.analysis.report.training_figures import (
    MAX_PANELS,
    final_step,
    gradient_curves_figure,
    loss_curves_figure,
    panel_labels,
    varying_columns,
)
from gradprobe.analysis.stats.training_stats import IDENTITY


def _svg(figure, alt: str, key: str) -> Markup:
    svg = to_svg(figure, key).replace("<svg ", f'<svg role="img" aria-label="{escape(alt)}" ',
                                      1)
    return Markup(svg)


def _download(analysis: Analysis, key: str, data: pd.DataFrame) -> dict[str, Any]:
    """The figure's plotted data as a CSV download (issue 7: every figure's data)."""
    from gradprobe.analysis.report.pages import csv_data_uri
    from gradprobe.bench.store.run_dir import slug

    return {"csv": csv_data_uri(data), "rows": len(data),
            "csv_name": f"{slug(analysis.run_dir.resolve().name, 'gradprobe')}-{key}.csv"}


def steps_text(value: float, last: int) -> str:
    """A step count, or "> N" for "not within the run's N steps"."""
    return f"> {last}" if not math.isfinite(value) else f"{value:.0f}"


def reach_text(row: pd.Series) -> str:
    """``"28/30 [0.79, 0.98]; median 140 [120, 180]"``."""
    last = int(row["last_step"])
    median = (f"median {steps_text(row['median_steps'], last)} "
              f"[{steps_text(row['median_low'], last)}, {steps_text(row['median_high'], last)}]")
    return (f"{int(row['n_reached'])}/{int(row['n_seeds'])} "
            f"[{row['frac_low']:.2f}, {row['frac_high']:.2f}]; {median}")


def _verdict(row: pd.Series) -> str:
    p = fmt_p(row["p_adjusted"])
    if p == "n/a":
        return "n/a (no testable seed pairs)"
    return p if row["significant"] else f"{p} (not significant)"


def reach_rows(analysis: Analysis, varying: list[str]) -> list[dict[str, str]]:
    """One row per configuration and target loss: both variants and the sign test."""
    reach, tests = analysis.train_reach, analysis.train_tests
    if reach.empty:
        return []
    reach = reach.assign(panel=panel_labels(reach, varying))
    if tests.empty:  # no plain/residual pairs: each configuration on its own
        rows = []
        for row in reach.itertuples(index=False):
            variant = "residual" if getattr(row, "residual", False) else "plain"
            rows.append({"config": row.panel, "target": fmt(row.target_loss),
                         "plain": "-", "residual": "-", "order": "-", "p": "-",
                         variant: reach_text(pd.Series(row._asdict()))})
        return rows
    by_cell = reach.set_index(["cell_id", "train_id", "target_loss"])
    rows = []
    for test in tests.assign(panel=panel_labels(tests, varying)).itertuples(index=False):
        plain = by_cell.loc[(test.cell_control, test.train_id, test.target_loss)]
        residual = by_cell.loc[(test.cell_treatment, test.train_id, test.target_loss)]
        rows.append({"config": test.panel, "target": fmt(test.target_loss),
                     "plain": reach_text(plain), "residual": reach_text(residual),
                     "order": f"{test.n_residual_first} / {test.n_plain_first} / {test.n_ties}",
                     "p": _verdict(pd.Series(test._asdict()))})
    return rows


def final_rows(analysis: Analysis, varying: list[str]) -> list[dict[str, str]]:
    """One row per configuration: final loss of each variant and their paired ratio."""
    final, curves = analysis.train_final, analysis.train_curves
    if final.empty:
        return []
    last = final_step(curves).set_index(["cell_id", "train_id"])
    rows = []
    for pair in final.assign(panel=panel_labels(final, varying)).itertuples(index=False):
        plain = last.loc[(pair.cell_control, pair.train_id)]
        residual = last.loc[(pair.cell_treatment, pair.train_id)]
        rows.append({"config": pair.panel, "step": int(plain["step"]),
                     "plain": fmt_ci(plain["geo_mean"], plain["ci_low"], plain["ci_high"]),
                     "residual": fmt_ci(residual["geo_mean"], residual["ci_low"],
                                        residual["ci_high"]),
                     "diverged": f"{int(plain['n_nonfinite'])} / {int(residual['n_nonfinite'])}",
                     "ratio": fmt_ci(pair.ratio, pair.ci_low, pair.ci_high),
                     "p": _verdict(pd.Series(pair._asdict()))})
    return rows


def summary_sentence(analysis: Analysis) -> str:
    """How often skips made a target loss come sooner, significantly, across the run."""
    tests = analysis.train_tests
    if tests.empty:
        return ""
    sig = tests[tests["significant"]]
    faster = int((sig["n_residual_first"] > sig["n_plain_first"]).sum())
    return (f"Across {len(tests)} comparisons (configuration x target loss), the residual "
            f"network reached the target first in significantly more seeds in {faster}, the "
            f"plain network in {len(sig) - faster}, and the difference was not significant "
            f"in {len(tests) - len(sig)} (exact sign tests on the seeds where one got there "
            "first, Benjamini-Hochberg at FDR 5%).")


def training_context(analysis: Analysis, targets) -> dict[str, Any]:
    """Everything ``training_section.html.j2`` shows; ``{"training": None}`` without
    training data."""
    curves = analysis.train_curves
    if curves.empty:
        return {"training": None}
    varying = varying_columns(curves, IDENTITY)
    loss_figure, loss_panels = loss_curves_figure(curves, varying, targets)
    grad_figure, grad_panels = gradient_curves_figure(analysis.train_grads, varying)
    figures = [f for f in (
        _figure(analysis, "train-loss", "Training loss, plain vs residual", loss_figure,
                "Training loss against optimizer step, plain and residual, one panel per "
                "configuration, log axis", curves,
                _caption("Full-batch training loss (geometric mean over seeds, 95% t band); "
                         "dotted lines are the target losses of the table below.",
                         loss_panels)),
        _figure(analysis, "train-grads", "First-layer gradient during training", grad_figure,
                "First layer mean absolute gradient against optimizer step, plain and "
                "residual, log axis", analysis.train_grads,
                _caption("Mean |gradient| of the first layer's weight at the logged steps "
                         "(geometric mean over seeds, 95% band): does the signal that "
                         "vanished at initialisation recover as the network trains?",
                         grad_panels)),
    ) if f is not None]
    setups = curves[list(dict.fromkeys(c for c in curves.columns if c in
                                      ("steps", "optimizer", "lr", "momentum", "samples",
                                       "teacher_depth", "teacher_width")))].drop_duplicates()
    return {"training": {"figures": figures, "reach_rows": reach_rows(analysis, varying),
                         "final_rows": final_rows(analysis, varying),
                         "summary": summary_sentence(analysis),
                         "setups": setups.to_dict("records"),
                         "n_seeds": int(curves["n_seeds"].max())}}


def _figure(analysis: Analysis, key: str, title: str, figure, alt: str, data: pd.DataFrame,
            caption: str) -> dict[str, Any] | None:
    """One figure of the section with its alt text, caption and CSV download."""
    if figure is None:
        return None
    return {"key": key, "title": title, "svg": _svg(figure, alt, key), "caption": caption,
            "cells": cells_shown(data, swept_values(analysis)), **_download(analysis, key, data)}


def _caption(text: str, panels: int) -> str:
    if panels > MAX_PANELS:
        text += f" The first {MAX_PANELS} of {panels} configurations are drawn; the tables " \
                "list all of them."
    return text
