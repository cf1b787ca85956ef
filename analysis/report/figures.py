"""Report figures: what each one plots (a tidy table, offered as CSV) and how it is drawn.

Each figure has a ``*_data`` function that returns exactly the rows it draws, and a drawing
function that takes those rows. Figures plot aggregates (geometric means with bootstrap CIs
from :mod:`gradprobe.analysis.stats.summary`, paired ratios from
:mod:`gradprobe.analysis.stats.effects`), never one mark per
record, except the per-seed figure of the headline configuration, whose point is to show
every seed. Shared look (colours, ticks, legends): :mod:`gradprobe.analysis.report.plot_style`.

Quantities are dimensionless: inputs are unitless numbers, the loss is an MSE against a
constant, so every gradient and norm is a plain number and the axes say so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter

from gradprobe.analysis.report.plot_style import (
    RATIO_CMAP,
    VARIANT_COLORS,
    VARIANT_ORDER,
    decade_stride,
    decade_ticks,
    integer_ticks,
    legend_on_top,
    shared_labels,
    variant_handles,
)
from gradprobe.analysis.stats.series import axis_columns

METRIC_LABELS = {
    "grad_mean_abs": "mean |∂L/∂W|",
    "grad_l2": "‖∂L/∂W‖₂",
    "grad_max_abs": "max |∂L/∂W|",
    "weight_l2": "‖W‖₂ at init",
    "act_rms": "RMS of layer output",
    "grad_act_rms": "RMS of ∂L/∂h",
}
UNIT = "unitless, log scale"
STAT_COLUMNS = ["metric", "param", "layer", "n_seeds", "n_used", "geo_mean", "ci_low",
                "ci_high"]


def metric_label(metric: str) -> str:
    return f"{METRIC_LABELS.get(metric, metric)} ({UNIT})"


def seeds_label(data: pd.DataFrame, *, used: str = "n_used", what: str = "seeds") -> str:
    """``geometric mean over 50 seeds, 95% CI``; a range when zeros were excluded somewhere."""
    low, high = int(data[used].min()), int(data[used].max())
    total = int(data["n_seeds"].max()) if "n_seeds" in data else high
    count = f"{high}" if low == high == total else f"{low}-{high} of {total}"
    return f"geometric mean over {count} {what}, 95% CI"


def with_variant(frame: pd.DataFrame) -> pd.DataFrame:
    """Adds ``variant`` (``plain`` | ``residual``) from the boolean ``residual`` column."""
    frame = frame.copy()
    flags = frame.get("residual", False)
    frame["variant"] = np.where(flags, "residual", "plain")
    return frame


def _tidy(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    keep = ["cell_id", *axis_columns(frame), "variant", *columns]
    return frame[[c for c in dict.fromkeys(keep) if c in frame]].reset_index(drop=True)


def plottable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows a log axis can show: a finite positive geometric mean; missing CI bounds (too
    few seeds) collapse onto the point. The CSV keeps every row; the findings say why a
    cell has no drawable value (all seeds zero or non-finite)."""
    frame = frame[drawable(frame["geo_mean"])].copy()
    for bound in ("ci_low", "ci_high"):
        frame[bound] = frame[bound].where(drawable(frame[bound]), frame["geo_mean"])
    return frame


def _band(data: pd.DataFrame, x: str, color: str, label: str, **_) -> None:
    data = data.sort_values(x)
    ax = plt.gca()
    ax.plot(data[x], data["geo_mean"], marker="o", ms=3, lw=1.4, color=color, label=label)
    ax.fill_between(data[x], data["ci_low"], data["ci_high"], color=color, alpha=0.22, lw=0)


# -- per-layer profile ---------------------------------------------------------------------

def profile_data(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Weight rows of ``summary`` for ``metric``: one per (cell, layer), with ``variant``.
    ``summary`` holds one width (every axis but depth and residual fixed)."""
    rows = summary[(summary["metric"] == metric) & (summary["kind"] == "weight")]
    rows = with_variant(rows).sort_values(["depth", "variant", "layer"])
    return _tidy(rows, STAT_COLUMNS)


def layer_profile(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """Geometric mean per layer with its CI band, plain vs residual, one panel per depth
    (each with its own y range: deep plain networks span tens of decades)."""
    data = plottable(data)
    if data.empty:
        return None
    depths = sorted(data["depth"].unique())
    ncol = min(len(depths), 5)
    grid = sns.FacetGrid(data, col="depth", col_wrap=ncol if len(depths) > 1 else None,
                         hue="variant", hue_order=VARIANT_ORDER, palette=VARIANT_COLORS,
                         sharey=False, sharex=False, height=2.5, aspect=0.85)
    grid.map_dataframe(_band, x="layer")
    grid.set(yscale="log")
    for depth, ax in grid.axes_dict.items():
        decade_ticks(ax)
        integer_ticks(ax, values=range(int(depth)))
    grid.set_titles(col_template="depth {col_name}")
    shared_labels(grid.figure, "layer index (0 = input side)",
                  f"{metric_label(metric)}\n{seeds_label(data)}")
    legend_on_top(grid.figure, variant_handles())
    return grid.figure


# -- residual/plain ratio over depth and width ---------------------------------------------

def ratio_data(effects: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The first layer's paired residual/plain ratios, one row per (depth, width)."""
    if effects.empty:
        return pd.DataFrame()
    rows = effects[(effects["metric"] == metric) & (effects["layer"] == 0)
                   & (effects["kind"] == "weight")]
    columns = ["metric", "param", "layer", "n_pairs", "ratio", "ci_low", "ci_high",
               "log10_ratio", "p_adjusted", "significant"]
    keep = [*axis_columns(rows), *columns]
    return rows[keep].sort_values(["depth", "width"]).reset_index(drop=True)


def ratio_label(ratio: float, significant: bool) -> str:
    """``3.4×``, ``570×``, ``5.4e32×``; a second line ``ns`` when not significant."""
    if not np.isfinite(ratio):
        return "n/a"
    if 0.01 <= ratio < 1000:
        text = f"{float(f'{ratio:.2g}'):g}×"  # 601 -> 600×, not 6e+02×
    else:
        mantissa, exponent = f"{ratio:.1e}".split("e")
        text = f"{mantissa}e{int(exponent)}×"
    return text if significant else f"{text}\nns"


def ratio_heatmap(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """log10 residual/plain ratio of the first layer, depth (rows) x width (columns)."""
    if data.empty or data["depth"].nunique() < 2 or data["width"].nunique() < 2:
        return None
    grid = data.pivot_table(index="depth", columns="width", values="log10_ratio")
    labels = data.assign(label=[ratio_label(10.0**v, s) for v, s in
                                zip(data["log10_ratio"], data["significant"], strict=True)])
    labels = labels.pivot_table(index="depth", columns="width", values="label",
                                aggfunc="first").loc[grid.index, grid.columns]
    values = grid.to_numpy()[np.isfinite(grid.to_numpy())]
    # The colour range always includes ratio 1 (white) and only spans the data's side(s) of
    # it: a one-sided sweep gets the full light-to-dark range of one hue.
    low = min(float(values.min()) if values.size else 0.0, 0.0)
    high = max(float(values.max()) if values.size else 0.0, 0.0)
    if high - low < 1e-9:
        low, high = -1.0, 1.0
    size = (1.8 + 0.95 * grid.shape[1], max(2.6, 0.8 + 0.36 * grid.shape[0]))
    fig, ax = plt.subplots(figsize=size)
    sns.heatmap(grid, annot=labels, fmt="", cmap=RATIO_CMAP, center=0, vmin=low,
                vmax=high, ax=ax, annot_kws={"fontsize": 7.5}, linewidths=0.5,
                linecolor="white")
    bar = ax.collections[0].colorbar
    _ratio_colorbar(bar, low, high)
    count = seeds_label(data, used="n_pairs", what="seed pairs").removesuffix(", 95% CI")
    bar.set_label(f"residual / plain, first layer {METRIC_LABELS.get(metric, metric)}\n"
                  f"({count}; log scale)", labelpad=8)
    ax.set_xlabel("width (hidden units)")
    ax.set_ylabel("depth (Linear layers)")
    ax.tick_params(axis="y", rotation=0)
    return fig


def _ratio_colorbar(bar, low: float, high: float) -> None:
    """Colour bar ticks as ratios (10^k) at evenly strided whole decades, 10^0 included."""
    stride = decade_stride(high - low)
    ticks = range(int(np.ceil(low / stride)) * stride, int(high) + 1, stride)
    bar.ax.yaxis.set_major_locator(FixedLocator(list(ticks)))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"$10^{{{int(v)}}}$"))


# -- first layer against depth -------------------------------------------------------------

def depth_data(summary: pd.DataFrame, trends: pd.DataFrame, metric: str) -> pd.DataFrame:
    """First-layer weight rows over depth, per width and variant, with the fitted line of
    :mod:`gradprobe.analysis.stats.trends` as ``fit_slope``, ``fit_intercept`` (log10 units per
    layer) and
    ``fit_factor_per_layer`` (NaN where no fit exists)."""
    rows = summary[(summary["metric"] == metric) & (summary["layer"] == 0)
                   & (summary["kind"] == "weight")]
    rows = _tidy(with_variant(rows), STAT_COLUMNS)
    fits = trends[(trends["metric"] == metric) & (trends["role"] == "first")] \
        if not trends.empty else trends
    keys = [c for c in ("width", "residual") if c in fits and c in rows]
    if fits.empty or not keys:
        return rows.assign(fit_slope=np.nan, fit_intercept=np.nan, fit_factor_per_layer=np.nan,
                           theory_slope=np.nan)
    if "predicted_slope" not in fits:
        fits = fits.assign(predicted_slope=np.nan)
    fits = fits[[*keys, "slope", "intercept", "factor_per_layer", "predicted_slope"]].rename(
        columns={"slope": "fit_slope", "intercept": "fit_intercept",
                 "factor_per_layer": "fit_factor_per_layer",
                 "predicted_slope": "theory_slope"})
    return rows.merge(fits, on=keys, how="left").sort_values(["width", "variant", "depth"])


def depth_trend(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """First-layer metric against depth with CIs and dashed fitted lines, one panel per
    width, shared log y axis so the widths compare directly."""
    data = plottable(data)
    if data.empty or data["depth"].nunique() < 2:
        return None
    widths = sorted(data["width"].unique())
    ncol = min(len(widths), 5)
    grid = sns.FacetGrid(data, col="width", col_wrap=ncol if len(widths) > 1 else None,
                         hue="variant", hue_order=VARIANT_ORDER, palette=VARIANT_COLORS,
                         sharey=True, height=3.0, aspect=0.75)
    grid.map_dataframe(_band, x="depth")
    for _, panel in data.groupby(["width", "variant"]):
        _fit_line(grid.axes_dict[panel["width"].iloc[0]], panel)
    grid.set(yscale="log")
    depths = sorted(data["depth"].unique())
    for ax in grid.axes.flat:
        integer_ticks(ax, values=depths)
    decade_ticks(grid.axes.flat[0])
    grid.set_titles(col_template="width {col_name} (hidden units)")
    shared_labels(grid.figure, "depth (Linear layers)",
                  f"first layer {metric_label(metric)}\n{seeds_label(data)}")
    legend_on_top(grid.figure, variant_handles(fit=data["fit_slope"].notna().any(),
                                               theory=data["theory_slope"].notna().any()))
    return grid.figure


def _fit_line(ax: plt.Axes, panel: pd.DataFrame) -> None:
    row = panel.iloc[0]
    if not np.isfinite(row["fit_slope"]):
        return
    depths = np.linspace(panel["depth"].min(), panel["depth"].max(), 50)
    ax.plot(depths, 10 ** (row["fit_intercept"] + row["fit_slope"] * depths), ls="--",
            lw=1, color=VARIANT_COLORS[row["variant"]], zorder=1)
    if np.isfinite(row.get("theory_slope", np.nan)):
        # Theory predicts the slope, not the level: draw it through the fit's midpoint.
        middle = depths.mean()
        level = row["fit_intercept"] + row["fit_slope"] * middle
        ax.plot(depths, 10 ** (level + row["theory_slope"] * (depths - middle)), ls=":",
                lw=1.6, color="black", zorder=2)


# -- every seed of the headline configuration ----------------------------------------------

def seed_data(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (seed, parameter, variant) of the headline cells: ``cell_id``, ``seed``,
    ``param``, ``layer``, ``variant`` and the metric (zeros kept: they are data, though a
    log axis cannot draw them)."""
    rows = with_variant(records).sort_values(["layer", "variant", "seed"])
    return rows[["cell_id", "seed", "param", "layer", "variant", metric]].reset_index(drop=True)


def drawable(values: pd.Series) -> pd.Series:
    """What a log axis can show: finite and positive."""
    return np.isfinite(values) & (values > 0)


def seed_distribution(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """Every seed's value per parameter (box + points, log axis), plain vs residual."""
    shown = data[drawable(data[metric])]
    if shown.empty:
        return None
    order = shown.sort_values("layer")["param"].unique()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(order) + 1.6), 3.6))
    sns.boxplot(data=shown, x="param", y=metric, hue="variant", hue_order=VARIANT_ORDER,
                palette=VARIANT_COLORS, order=order, showfliers=False, fill=False,
                log_scale=True, ax=ax, legend=False, width=0.7)
    sns.stripplot(data=shown, x="param", y=metric, hue="variant", hue_order=VARIANT_ORDER,
                  palette=VARIANT_COLORS, order=order, dodge=True, size=2.5, alpha=0.55,
                  jitter=0.2, ax=ax, legend=False)
    decade_ticks(ax)
    n = shown.groupby("variant")["seed"].nunique().max()
    ax.set_xlabel("parameter (input side first)")
    ax.set_ylabel(f"{metric_label(metric)}\none point per seed ({n} seeds)")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()  # before the legend, which sits above the axes, outside them
    legend_on_top(fig, variant_handles())
    return fig
