"""Report figures: what each one plots (a tidy table, offered as CSV) and how it is drawn.

Each figure has a ``*_data`` function that returns exactly the rows it draws, and a drawing
function that takes those rows. Figures plot aggregates (geometric means with t CIs
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
from matplotlib import patheffects
from matplotlib import pyplot as plt
from matplotlib.ticker import FixedLocator, FuncFormatter

from gradprobe.analysis.report.param_groups import with_blocks
from gradprobe.analysis.report.plot_style import (
    RATIO_CMAP,
    VARIANT_ORDER,
    VARIANT_STYLES,
    decade_stride,
    decade_ticks,
    integer_ticks,
    legend_on_top,
    shared_labels,
    variant_colors,
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


def with_setting(frame: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """Adds ``setting``: the values of the swept ``axes`` a figure does not put on an axis
    (``norm_position post``), one facet row each, so that no swept value goes unplotted."""
    frame = frame.copy()
    shown = [a for a in axes if a in frame]
    frame["setting"] = [", ".join(f"{a} {v}" for a, v in zip(shown, row, strict=True))
                        for row in frame[shown].itertuples(index=False)] if shown else ""
    return frame


def depth_label(frame: pd.DataFrame) -> str:
    """``depth (Linear layers)`` for the reference MLP, ``depth (blocks)`` for a factory."""
    factory = frame["factory"].astype(str) if "factory" in frame else pd.Series([""])
    return "depth (blocks)" if (factory != "").any() else "depth (Linear layers)"


def _facets(data: pd.DataFrame, col: str) -> dict:
    """FacetGrid keywords: one column per ``col`` value, one row per setting when several
    (else the columns wrap at five)."""
    if data["setting"].nunique() > 1:
        return {"row": "setting", "col": col, "margin_titles": True}
    n = data[col].nunique()
    return {"col": col, "col_wrap": min(n, 5) if n > 1 else None}


def _titles(grid: sns.FacetGrid, col_template: str) -> None:
    if grid.row_names:
        grid.set_titles(col_template=col_template, row_template="{row_name}")
    else:
        grid.set_titles(col_template=col_template)


def _tidy(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    keep = ["cell_id", *axis_columns(frame), "setting", "variant", *columns]
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
    """Line and CI band; plain and residual differ in line style and marker as well as
    colour, so they stay apart in grey print and for colour-blind readers."""
    data = data.sort_values(x)
    ax = plt.gca()
    style = VARIANT_STYLES.get(label, {})
    ax.plot(data[x], data["geo_mean"], ms=3, lw=1.4, color=color, label=label, zorder=2,
            **style)
    ax.fill_between(data[x], data["ci_low"], data["ci_high"], color=color, alpha=0.22, lw=0,
                    zorder=1)


# -- per-layer profile ---------------------------------------------------------------------

def profile_data(summary: pd.DataFrame, metric: str, settings: list[str] = ()) -> pd.DataFrame:
    """Weight rows of ``summary`` for ``metric``: one per (cell, layer), with ``variant`` and
    ``setting`` (the values of the swept ``settings`` axes). ``summary`` holds one width."""
    rows = summary[(summary["metric"] == metric) & (summary["kind"] == "weight")]
    rows = with_setting(with_variant(rows), list(settings))
    return _tidy(rows.sort_values(["setting", "depth", "variant", "layer"]), STAT_COLUMNS)


def layer_profile(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """Geometric mean per layer with its CI band, plain vs residual, one panel per depth
    (and one row per setting), all on one shared log y range so panels compare directly."""
    data = plottable(data)
    if data.empty:
        return None
    grid = sns.FacetGrid(data, **_facets(data, "depth"), hue="variant",
                         hue_order=VARIANT_ORDER, palette=variant_colors(), sharey=True,
                         sharex=False, height=2.5, aspect=0.85)
    grid.map_dataframe(_band, x="layer")
    grid.set(yscale="log")
    decade_ticks(grid.axes.flat[0])
    for (_, depth), ax in zip(_panel_keys(grid), grid.axes.flat, strict=False):
        integer_ticks(ax, values=range(int(depth)))
    _titles(grid, "depth {col_name}")
    shared_labels(grid.figure, "layer index (0 = input side)",
                  f"{metric_label(metric)}\n{seeds_label(data)}")
    legend_on_top(grid.figure, variant_handles())
    return grid.figure


def _panel_keys(grid: sns.FacetGrid) -> list[tuple]:
    """(row, column) value of each panel in ``grid.axes.flat`` order."""
    rows = grid.row_names or [None]
    return [(r, c) for r in rows for c in grid.col_names]


# -- residual/plain ratio over depth and width ---------------------------------------------

def ratio_data(effects: pd.DataFrame, metric: str, settings: list[str] = ()) -> pd.DataFrame:
    """The first layer's paired residual/plain ratios, one row per (setting, depth, width)."""
    if effects.empty:
        return pd.DataFrame()
    rows = effects[(effects["metric"] == metric) & (effects["layer"] == 0)
                   & (effects["kind"] == "weight")]
    rows = with_setting(rows, list(settings))
    columns = ["metric", "param", "layer", "n_pairs", "ratio", "ci_low", "ci_high",
               "log10_ratio", "p_adjusted", "significant"]
    keep = [*axis_columns(rows), "setting", *columns]
    return rows[keep].sort_values(["setting", "depth", "width"]).reset_index(drop=True)


def ratio_label(ratio: float, significant: bool) -> str:
    """``3.4×``, ``570×``, ``5.4e32×``; a second line ``ns`` when not significant."""
    if not np.isfinite(ratio):
        return "n/a"
    text = _times(ratio)
    return text if significant else f"{text}\nns"


def _times(ratio: float) -> str:
    if 0.01 <= ratio < 1000:
        return f"{float(f'{ratio:.2g}'):g}×"  # 601 -> 600×, not 6e+02×
    mantissa, exponent = f"{ratio:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}×"


def ratio_cell_label(row: pd.Series) -> str:
    """The ratio, its 95% CI on a second line (``410-880``), ``ns`` when not significant."""
    label = ratio_label(row["ratio"], bool(row["significant"]))
    if not (np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"])):
        return label
    first, *rest = label.split("\n")
    interval = f"{_times(row['ci_low']).rstrip('×')}-{_times(row['ci_high'])}"
    return "\n".join([first, interval, *rest])


def ratio_heatmap(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """log10 residual/plain ratio of the first layer, depth (rows) x width (columns), one
    panel per setting; each cell labelled with the ratio and its CI, not-significant cells
    hatched."""
    if data.empty or data["depth"].nunique() < 2 or data["width"].nunique() < 2:
        return None
    values = data["log10_ratio"].to_numpy()
    values = values[np.isfinite(values)]
    # The colour range always includes ratio 1 (white) and only spans the data's side(s) of
    # it: a one-sided sweep gets the full light-to-dark range of one hue.
    low = min(float(values.min()) if values.size else 0.0, 0.0)
    high = max(float(values.max()) if values.size else 0.0, 0.0)
    if high - low < 1e-9:
        low, high = -1.0, 1.0
    settings = list(dict.fromkeys(data["setting"]))
    shape = (data["depth"].nunique(), data["width"].nunique())
    size = (1.8 + 1.15 * shape[1] * len(settings), max(2.8, 0.8 + 0.5 * shape[0]))
    fig, axes = plt.subplots(1, len(settings), figsize=size, squeeze=False, sharey=True)
    for ax, setting in zip(axes.flat, settings, strict=True):
        _ratio_panel(ax, data[data["setting"] == setting], low, high,
                     colorbar=setting == settings[-1])
        ax.set_title(setting)
        ax.set_xlabel("width (hidden units)")
    bar = axes.flat[-1].collections[0].colorbar
    _ratio_colorbar(bar, low, high)
    count = seeds_label(data, used="n_pairs", what="seed pairs").removesuffix(", 95% CI")
    bar.set_label(f"residual / plain, first layer {METRIC_LABELS.get(metric, metric)}\n"
                  f"({count}; log scale)", labelpad=8)
    axes.flat[0].set_ylabel(depth_label(data))
    return fig


def _ratio_panel(ax: plt.Axes, data: pd.DataFrame, low: float, high: float,
                 colorbar: bool) -> None:
    grid = data.pivot_table(index="depth", columns="width", values="log10_ratio")
    labels = data.assign(label=data.apply(ratio_cell_label, axis=1)).pivot_table(
        index="depth", columns="width", values="label", aggfunc="first")
    labels = labels.reindex(index=grid.index, columns=grid.columns)
    sns.heatmap(grid, annot=labels, fmt="", cmap=RATIO_CMAP, center=0, vmin=low, vmax=high,
                ax=ax, annot_kws={"fontsize": 6.5}, linewidths=0.5, linecolor="white",
                cbar=colorbar)
    ns = data.pivot_table(index="depth", columns="width", values="significant",
                          aggfunc="first").reindex(index=grid.index, columns=grid.columns)
    for (i, j), significant in np.ndenumerate(ns.to_numpy()):
        if significant is False or significant == 0:  # hatched: not significant at 5% FDR
            ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, hatch="///", lw=0,
                                       edgecolor="#9a9a9a", alpha=0.6))
    ax.set_ylabel("")
    ax.tick_params(axis="y", rotation=0)


def _ratio_colorbar(bar, low: float, high: float) -> None:
    """Colour bar ticks as ratios (10^k) at evenly strided whole decades, 10^0 included."""
    stride = decade_stride(high - low)
    ticks = range(int(np.ceil(low / stride)) * stride, int(high) + 1, stride)
    bar.ax.yaxis.set_major_locator(FixedLocator(list(ticks)))
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"$10^{{{int(v)}}}$"))


# -- first layer against depth -------------------------------------------------------------

def depth_data(summary: pd.DataFrame, trends: pd.DataFrame, metric: str,
               settings: list[str] = ()) -> pd.DataFrame:
    """First-layer weight rows over depth, per width, setting and variant, with the fitted
    line of :mod:`gradprobe.analysis.stats.trends` as ``fit_slope``, ``fit_intercept``
    (log10 units per layer) and ``fit_factor_per_layer`` (NaN where no fit exists)."""
    rows = summary[(summary["metric"] == metric) & (summary["layer"] == 0)
                   & (summary["kind"] == "weight")]
    rows = _tidy(with_setting(with_variant(rows), list(settings)), STAT_COLUMNS)
    fits = trends[(trends["metric"] == metric) & (trends["role"] == "first")] \
        if not trends.empty else trends
    keys = [c for c in ("width", "residual", *settings) if c in fits and c in rows]
    if fits.empty or not keys:
        return rows.assign(fit_slope=np.nan, fit_intercept=np.nan, fit_factor_per_layer=np.nan,
                           theory_slope=np.nan)
    if "predicted_slope" not in fits:
        fits = fits.assign(predicted_slope=np.nan)
    fits = fits[[*keys, "slope", "intercept", "factor_per_layer", "predicted_slope"]].rename(
        columns={"slope": "fit_slope", "intercept": "fit_intercept",
                 "factor_per_layer": "fit_factor_per_layer",
                 "predicted_slope": "theory_slope"})
    return rows.merge(fits, on=keys, how="left").sort_values(
        ["setting", "width", "variant", "depth"])


def depth_trend(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """First-layer metric against depth with CIs and dashed fitted lines, one panel per
    width (and one row per setting), shared log y axis so the panels compare directly."""
    data = plottable(data)
    if data.empty or data["depth"].nunique() < 2:
        return None
    grid = sns.FacetGrid(data, **_facets(data, "width"), hue="variant",
                         hue_order=VARIANT_ORDER, palette=variant_colors(), sharey=True,
                         height=3.0, aspect=0.75)
    grid.map_dataframe(_band, x="depth")
    panels = dict(zip(_panel_keys(grid), grid.axes.flat, strict=False))
    for (setting, width, _), panel in data.groupby(["setting", "width", "variant"]):
        key = (setting if grid.row_names else None, width)
        _fit_line(panels[key], panel)
    grid.set(yscale="log")
    depths = sorted(data["depth"].unique())
    for ax in grid.axes.flat:
        integer_ticks(ax, values=depths)
    decade_ticks(grid.axes.flat[0])
    _titles(grid, "width {col_name}")
    shared_labels(grid.figure, depth_label(data),
                  f"first layer {metric_label(metric)}\n{seeds_label(data)}")
    legend_on_top(grid.figure, variant_handles(fit=data["fit_slope"].notna().any(),
                                               theory=data["theory_slope"].notna().any()))
    return grid.figure


def _fit_line(ax: plt.Axes, panel: pd.DataFrame) -> None:
    """The fitted (dashed) and theory (dotted) lines, drawn over the data with a white halo
    so that the bands cannot hide them."""
    row = panel.iloc[0]
    if not np.isfinite(row["fit_slope"]):
        return
    halo = [patheffects.withStroke(linewidth=3, foreground="white")]
    depths = np.linspace(panel["depth"].min(), panel["depth"].max(), 50)
    ax.plot(depths, 10 ** (row["fit_intercept"] + row["fit_slope"] * depths), ls="--",
            lw=1.2, color=variant_colors()[row["variant"]], zorder=4, path_effects=halo)
    if np.isfinite(row.get("theory_slope", np.nan)):
        # Theory predicts the slope, not the level: draw it through the fit's midpoint.
        middle = depths.mean()
        level = row["fit_intercept"] + row["fit_slope"] * middle
        ax.plot(depths, 10 ** (level + row["theory_slope"] * (depths - middle)), ls=":",
                lw=1.6, color="black", zorder=5, path_effects=halo)


# -- every seed of the headline configuration ----------------------------------------------

def seed_data(records: pd.DataFrame, metric: str, *, blocked: bool = False) -> pd.DataFrame:
    """One row per (seed, parameter, variant) of the headline cells: ``cell_id``, ``seed``,
    ``param``, ``layer``, ``variant`` and the metric (zeros kept: they are data, though a
    log axis cannot draw them). For a ``blocked`` model only the input-side block and the
    parameters outside blocks, so that the boxes stay readable at hundreds of parameters."""
    rows = with_variant(records).sort_values(["layer", "variant", "seed"])
    if blocked:
        grouped = with_blocks(rows)
        rows = rows[grouped["block"].isna() | (grouped["block"] == grouped["block"].min())]
    columns = ["cell_id", "seed", "param", "layer", "residual", "variant", metric]
    return rows[[c for c in columns if c in rows]].reset_index(drop=True)


def drawable(values: pd.Series) -> pd.Series:
    """What a log axis can show: finite and positive."""
    return np.isfinite(values) & (values > 0)


def seed_distribution(data: pd.DataFrame, metric: str) -> plt.Figure | None:
    """Every seed's value per parameter (box + points, log axis), plain vs residual."""
    shown = data[drawable(data[metric])]
    if shown.empty:
        return None
    order = shown.sort_values("layer")["param"].unique()
    fig, ax = plt.subplots(figsize=(min(max(4.0, 0.7 * len(order) + 1.6), 11.0), 3.8))
    sns.boxplot(data=shown, x="param", y=metric, hue="variant", hue_order=VARIANT_ORDER,
                palette=variant_colors(), order=order, showfliers=False, fill=False,
                log_scale=True, ax=ax, legend=False, width=0.7)
    sns.stripplot(data=shown, x="param", y=metric, hue="variant", hue_order=VARIANT_ORDER,
                  palette=variant_colors(), order=order, dodge=True, size=2.5, alpha=0.55,
                  jitter=0.2, ax=ax, legend=False)
    decade_ticks(ax)
    n = shown.groupby("variant")["seed"].nunique().max()
    ax.set_xlabel("parameter (input side first)")
    ax.set_ylabel(f"{metric_label(metric)}\none point per seed ({n} seeds)")
    ax.tick_params(axis="x", rotation=90)  # upright boxes never overlap (see the tests)
    fig.tight_layout()  # before the legend, which sits above the axes, outside them
    legend_on_top(fig, variant_handles())
    return fig
