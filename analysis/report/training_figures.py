"""Figures of the training section: loss and gradient curves, plain vs residual, with CIs.

Both plot the aggregates of :mod:`gradprobe.analysis.stats.training_stats` (geometric means over
seeds with 95%
t bands), one panel per training configuration (every varying axis but
``residual``), in the colours of :mod:`gradprobe.analysis.report.figures`.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from gradprobe.analysis.report.figures import (
    VARIANT_ORDER,
    _band,
    plottable,
    with_variant,
)
from gradprobe.analysis.report.plot_style import variant_colors

MAX_PANELS = 32  # beyond this a figure stops being readable; the caption says so


def panel_labels(frame: pd.DataFrame, varying: list[str]) -> pd.Series:
    """``"depth 8, lr 0.01"`` per row from the varying axes other than ``residual``."""
    keys = [k for k in varying if k != "residual" and k in frame.columns]
    if not keys:
        return pd.Series("all", index=frame.index)
    return frame[keys].astype(str).apply(
        lambda row: ", ".join(f"{k} {v}" for k, v in zip(keys, row, strict=True)), axis=1)


def _title(label: str, width: int = 34) -> str:
    """A panel label broken into lines of about ``width`` characters at its commas."""
    lines = [""]
    for part in label.split(", "):
        joined = f"{lines[-1]}, {part}" if lines[-1] else part
        if len(joined) > width and lines[-1]:
            lines.append(part)
        else:
            lines[-1] = joined
    return "\n".join(lines)


def _panels(frame: pd.DataFrame, varying: list[str]) -> tuple[pd.DataFrame, int]:
    frame = with_variant(frame).assign(panel=lambda f: panel_labels(f, varying).map(_title))
    order = list(dict.fromkeys(frame["panel"]))
    return frame[frame["panel"].isin(order[:MAX_PANELS])], len(order)


def _grid(data: pd.DataFrame, ylabel: str) -> sns.FacetGrid:
    panels = data["panel"].nunique()
    grid = sns.FacetGrid(data, col="panel", col_wrap=min(4, panels), hue="variant",
                         hue_order=VARIANT_ORDER, palette=variant_colors(), sharey=False,
                         height=2.4, aspect=1.2)
    grid.map_dataframe(_band, x="step")
    grid.set(yscale="log")
    grid.set_axis_labels("optimizer step", ylabel)
    grid.set_titles(col_template="{col_name}", size=8)
    grid.add_legend(title="")
    return grid


def loss_curves_figure(curves: pd.DataFrame, varying: list[str], targets=()
                       ) -> tuple[plt.Figure | None, int]:
    """Loss against step per configuration; dotted lines at the target losses.

    Returns the figure (None when nothing is plottable) and the number of panels that
    exist (more than :data:`MAX_PANELS` are cut)."""
    data, total = _panels(plottable(curves), varying)
    if data.empty:
        return None, total
    grid = _grid(data, "training loss\n(geometric mean over seeds, 95% CI)")
    for ax in grid.axes.flat:
        for target in targets:
            ax.axhline(target, color="#555555", lw=0.8, ls=":")
    return grid.figure, total


def gradient_curves_figure(grads: pd.DataFrame, varying: list[str], role: str = "first"
                           ) -> tuple[plt.Figure | None, int]:
    """The first (or output) layer's gradient against step per configuration."""
    data = grads[grads["role"] == role]
    data, total = _panels(plottable(data), varying)
    if data.empty:
        return None, total
    metric = data["metric"].iloc[0]
    grid = _grid(data, f"{role} layer {metric}\n(geometric mean over seeds, 95% CI)")
    return grid.figure, total


def final_step(curves: pd.DataFrame) -> pd.DataFrame:
    """The last curve point of every run (its final loss)."""
    last = curves.groupby(["cell_id", "train_id"])["step"].transform("max")
    return curves[curves["step"] == last]


def varying_columns(frame: pd.DataFrame, columns) -> list[str]:
    """Columns of ``frame`` (among ``columns``) with more than one value."""
    return [c for c in columns if c in frame.columns and frame[c].nunique(dropna=False) > 1]
