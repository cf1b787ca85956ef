"""Figures for models of repeated blocks (transformers, ResNets): the gradient against block
index per role, and the headline figure of residual/plain ratios per role.

Parameters are grouped by module path (:mod:`gradprobe.analysis.report.param_groups`), so a
model with hundreds of parameters draws a dozen short curves, not hundreds of tick labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.lines import Line2D

from gradprobe.analysis.report.figures import (
    METRIC_LABELS,
    STAT_COLUMNS,
    _band,
    _tidy,
    metric_label,
    plottable,
    seeds_label,
    with_setting,
    with_variant,
)
from gradprobe.analysis.report.param_groups import role_order, with_blocks
from gradprobe.analysis.report.plot_style import (
    VARIANT_ORDER,
    decade_ticks,
    integer_ticks,
    legend_on_top,
    series_style,
    shared_labels,
    variant_colors,
    variant_handles,
)
from gradprobe.analysis.stats.series import axis_columns


def block_profile_data(summary: pd.DataFrame, metric: str,
                       settings: list[str] = ()) -> pd.DataFrame:
    """For a model of repeated blocks (:mod:`gradprobe.analysis.report.param_groups`): the
    weight-like parameters inside blocks, one row per (cell, parameter) with ``block``,
    ``role``, ``variant`` and ``setting``. With plain and residual cells, the deepest swept
    depth (the gap between the variants is the point; shallower depths are in the depth
    figure); with one variant (a model as built), every depth, so that the profile shows
    how each role's curve moves as blocks are added. Parameters outside blocks are in the
    headline table."""
    rows = summary[(summary["metric"] == metric)
                   & summary["kind"].astype(str).str.endswith("weight")]
    rows = with_blocks(with_setting(with_variant(rows), list(settings)))
    rows = rows[rows["block"].notna()]
    if rows["variant"].nunique() > 1:
        rows = rows[rows["depth"] == rows["depth"].max()]
    rows = rows.sort_values(["setting", "depth", "layer", "variant"])
    return _tidy(rows, [*STAT_COLUMNS, "block", "role"])


def dotted_lines(name: str, width: int = 30) -> str:
    """``name`` broken after dots into lines of at most ``width`` characters (a module path
    has no spaces for matplotlib to wrap at)."""
    lines = [""]
    for part in name.split("."):
        piece = part if not lines[-1] else f".{part}"
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append(part)
        else:
            lines[-1] += piece
    return "\n".join(lines)


def _panel_names(data: pd.DataFrame) -> pd.Series:
    """One panel per role (and setting): its title."""
    roles = data["role"].map(dotted_lines)
    return roles if set(data["setting"]) == {""} else data["setting"] + "\n" + roles


def _depth_band(data: pd.DataFrame, x: str, color: str, label: str, **_) -> None:
    """Line and CI band of one depth; depths differ in marker as well as colour."""
    data = data.sort_values(x)
    ax = plt.gca()
    marker = series_style(int(data["depth_rank"].iloc[0]))["marker"]
    ax.plot(data[x], data["geo_mean"], ms=3.5, lw=1.3, color=color, marker=marker,
            label=label, zorder=2)
    ax.fill_between(data[x], data["ci_low"], data["ci_high"], color=color, alpha=0.18, lw=0,
                    zorder=1)


def block_profile(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """Geometric mean against block index, one panel per role (three to a row, one shared
    log y range, so roles and depths compare at a glance): the variants as hue, or, for
    one variant over several depths, the depths."""
    data = plottable(data)
    if data.empty:
        return None
    data = data.assign(panel=_panel_names(data))
    panels = list(dict.fromkeys(data.sort_values(["setting", "layer"])["panel"]))
    depths = sorted(int(d) for d in data["depth"].unique())
    by_depth = data["variant"].nunique() == 1 and len(depths) > 1
    common = {"col": "panel", "col_order": panels, "col_wrap": min(3, len(panels)),
              "sharey": True, "sharex": True, "height": 1.9, "aspect": 1.45}
    if by_depth:
        colours = [series_style(i)["color"] for i in range(len(depths))]
        data = data.assign(depth_rank=data["depth"].map({d: i for i, d in enumerate(depths)}))
        grid = sns.FacetGrid(data, hue="depth", hue_order=depths, palette=colours, **common)
        grid.map_dataframe(_depth_band, x="block")
        handles = [Line2D([], [], lw=1.3, ms=3.5, label=f"depth {d}", **series_style(i))
                   for i, d in enumerate(depths)]
        xlabel = "block index (0 = input side)"
    else:
        grid = sns.FacetGrid(data, hue="variant", hue_order=VARIANT_ORDER,
                             palette=variant_colors(), **common)
        grid.map_dataframe(_band, x="block")
        handles = variant_handles()
        xlabel = f"block index (0 = input side), depth {int(data['depth'].max())}"
    grid.set(yscale="log")
    blocks = sorted(int(b) for b in data["block"].unique())
    for ax in grid.axes.flat:
        integer_ticks(ax, values=blocks)
    decade_ticks(grid.axes.flat[0])
    grid.set_titles(col_template="{col_name}")
    shared_labels(grid.figure, xlabel, f"{metric_label(metric)}\n{seeds_label(data)}")
    legend_on_top(grid.figure, handles)
    return grid.figure


def role_ratio_data(effects: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The headline cell's paired residual/plain ratios of the weight-like parameters
    inside blocks: one row per parameter with ``block``, ``role``, ``ratio``, ``ci_low``,
    ``ci_high``, ``n_pairs``, ``p_adjusted``, ``significant``."""
    if effects.empty:
        return pd.DataFrame()
    rows = effects[(effects["metric"] == metric)
                   & effects["kind"].astype(str).str.endswith("weight")]
    rows = with_blocks(rows)
    rows = rows[rows["block"].notna()]
    columns = ["cell_id", *axis_columns(rows), "metric", "param", "layer", "block", "role",
               "n_pairs", "ratio", "ci_low", "ci_high", "p_adjusted", "significant"]
    return rows[[c for c in columns if c in rows]].sort_values("layer").reset_index(drop=True)


def role_ratios(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """Residual/plain ratio with its 95% CI against block index, one line per role, on a
    log axis with ratio 1 marked; hollow markers where not significant."""
    data = data[np.isfinite(data["ratio"]) & (data["ratio"] > 0)]
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    handles = []
    for i, role in enumerate(role_order(data)):
        style = series_style(i)
        handles.append(Line2D([], [], lw=1.2, ms=5, label=role, **style))
        part = data[data["role"] == role].sort_values("block")
        low = part["ci_low"].where(np.isfinite(part["ci_low"]), part["ratio"])
        high = part["ci_high"].where(np.isfinite(part["ci_high"]), part["ratio"])
        significant = part["significant"].astype(bool).to_numpy()
        ax.errorbar(part["block"], part["ratio"], yerr=[part["ratio"] - low, high - part["ratio"]],
                    lw=1.2, capsize=2, ms=0, **style)
        ax.plot(part["block"][significant], part["ratio"][significant], ls="none", ms=5,
                **style)
        ax.plot(part["block"][~significant], part["ratio"][~significant], ls="none", ms=6,
                mfc="white", mew=1.3, **style)
    ax.axhline(1.0, color="#444444", lw=0.8, ls=":")
    ax.set_yscale("log")
    decade_ticks(ax)
    integer_ticks(ax, values=[int(b) for b in sorted(data["block"].unique())])
    ax.set_xlabel("block index (0 = input side)")
    count = seeds_label(data, used="n_pairs", what="seed pairs")
    ax.set_ylabel(f"residual / plain\n{METRIC_LABELS.get(metric, metric)} (log scale)\n"
                  f"{count.replace('geometric mean', 'median paired ratio')}")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              fontsize=7.5, title="role (hollow: not significant)", title_fontsize=7.5)
    fig.tight_layout()
    return fig
