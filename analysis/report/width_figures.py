"""The width coordinate check (Yang et al. 2021, muP): activation RMS and gradient size
against width on log-log axes, per parameter role, with the fitted exponent and its CI from
:mod:`gradprobe.analysis.stats.width_scaling`.

A flat line (exponent 0) is a quantity that keeps its size as the network widens; the
exponent says how fast it grows (> 0) or shrinks (< 0) with width.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.ticker import FixedLocator, NullLocator

from gradprobe.analysis.report.figures import (
    METRIC_LABELS,
    STAT_COLUMNS,
    plottable,
    seeds_label,
    with_variant,
)
from gradprobe.analysis.report.param_groups import is_blocked, with_blocks
from gradprobe.analysis.report.plot_style import decade_ticks, series_style, shared_labels
from gradprobe.analysis.stats.series import axis_columns

WIDTH_METRICS = ("act_rms", "grad_mean_abs")


def width_data(summary: pd.DataFrame, exponents: pd.DataFrame) -> pd.DataFrame:
    """Weight rows of ``summary`` (one per cell, parameter and metric of
    :data:`WIDTH_METRICS`) with ``variant`` and the fitted ``exponent``, ``exponent_low``,
    ``exponent_high`` and ``intercept`` of its width series. ``summary`` holds one value of
    every axis but width and residual. A model of repeated blocks keeps the input-side block
    and the parameters outside blocks."""
    rows = summary[summary["metric"].isin(WIDTH_METRICS)
                   & summary["kind"].astype(str).str.endswith("weight")]
    if rows.empty or rows["width"].nunique() < 2 or exponents.empty:
        return pd.DataFrame()
    if is_blocked(rows["param"]):
        grouped = with_blocks(rows)
        rows = rows[(grouped["block"].isna() | (grouped["block"] == grouped["block"].min()))
                    .to_numpy()]
    keys = [c for c in axis_columns(rows) if c != "width" and c in exponents]
    fits = exponents[[*keys, "param", "metric", "exponent", "ci_low", "ci_high",
                      "intercept"]].rename(columns={"ci_low": "exponent_low",
                                                    "ci_high": "exponent_high"})
    rows = with_variant(rows).merge(fits, on=[*keys, "param", "metric"], how="left")
    keep = ["cell_id", *axis_columns(rows), "variant", *STAT_COLUMNS, "exponent",
            "exponent_low", "exponent_high", "intercept"]
    return rows[[c for c in dict.fromkeys(keep) if c in rows]].sort_values(
        ["metric", "variant", "layer", "width"]).reset_index(drop=True)


def exponent_label(row: pd.Series) -> str:
    """``layers.0.weight: a = 0.51 [0.47, 0.55]``."""
    if not np.isfinite(row["exponent"]):
        return f"{row['param']}: no fit"
    return (f"{row['param']}: a = {row['exponent']:+.2f} "
            f"[{row['exponent_low']:+.2f}, {row['exponent_high']:+.2f}]")


def width_check(data: pd.DataFrame, metric: str = "") -> plt.Figure | None:
    """One log-log panel per (metric, variant): geometric mean with its CI against width,
    one colour per parameter, the fitted power law dashed; each panel's legend gives the
    exponent ``a`` (value ~ width^a) with its 95% CI."""
    data = plottable(data)
    if data.empty or data["width"].nunique() < 2:
        return None
    panels = list(data.groupby(["metric", "variant"], sort=False))
    params = list(dict.fromkeys(data.sort_values("layer")["param"]))
    styles = {param: series_style(i) for i, param in enumerate(params)}
    fig, axes = plt.subplots(len(panels), 1, figsize=(7.2, 2.3 * len(panels)), squeeze=False)
    widths = sorted(data["width"].unique())
    for ax, ((name, variant), panel) in zip(axes.flat, panels, strict=True):
        for param, part in panel.groupby("param", sort=False):
            _power_law(ax, part.sort_values("width"), styles[param])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(FixedLocator(widths))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{w:g}" for w in widths])
        decade_ticks(ax)
        ax.set_title(f"{METRIC_LABELS.get(name, name)}, {variant}", loc="left")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=7,
                  title="value ~ width^a, 95% CI", title_fontsize=7)
    shared_labels(fig, "width (log scale)",
                  f"geometric mean (unitless, log scale)\n{seeds_label(data)}")
    return fig


def _power_law(ax: plt.Axes, part: pd.DataFrame, style: dict) -> None:
    row = part.iloc[0]
    x, y = part["width"].to_numpy(dtype=float), part["geo_mean"].to_numpy()
    ax.errorbar(x, y, yerr=[y - part["ci_low"], part["ci_high"] - y], lw=0, elinewidth=1,
                capsize=2, ms=4, label=exponent_label(row), **style)
    if np.isfinite(row["exponent"]):
        grid = np.geomspace(x.min(), x.max(), 20)
        ax.plot(grid, 10 ** (row["intercept"] + row["exponent"] * np.log10(grid)), ls="--",
                lw=1, color=style["color"])
