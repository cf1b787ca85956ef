"""Report figures, drawn with seaborn from the analysis tables, returned as inline SVG.

Every figure plots aggregates (geometric means with their bootstrap CIs from
:mod:`analysis.summary`), never one point per record, so drawing cost does not grow with the
number of seeds. Colours are the Okabe-Ito palette (colour-blind safe), one per variant,
the same in every figure.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

VARIANT_COLORS = {"plain": "#0072B2", "residual": "#D55E00"}
VARIANT_ORDER = ["plain", "residual"]
METRIC_LABELS = {
    "grad_mean_abs": "mean |gradient|",
    "grad_l2": "gradient L2 norm",
    "grad_max_abs": "max |gradient|",
    "weight_l2": "weight L2 norm",
    "act_rms": "activation RMS",
    "grad_act_rms": "RMS of dL/dh",
}
plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "gradprobe",
                     "figure.dpi": 100, "font.size": 9})


@dataclass(frozen=True)
class Figure:
    """A rendered figure: inline SVG plus the text a reader and a screen reader need."""

    key: str
    title: str
    svg: str
    caption: str
    alt: str
    data: pd.DataFrame  # what is plotted, offered as CSV


def to_svg(fig: plt.Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: it is inlined in HTML
    return re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)


def with_variant(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    if "residual" in frame:
        frame["variant"] = np.where(frame["residual"], "residual", "plain")
    else:
        frame["variant"] = "plain"
    return frame


def plottable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows a log axis can show: a finite positive geometric mean. Missing CI bounds (too
    few seeds) collapse onto the point. Cells with no such rows are simply not drawn; the
    findings and tables report why (zero or non-finite seeds)."""
    frame = frame[np.isfinite(frame["geo_mean"]) & (frame["geo_mean"] > 0)].copy()
    for bound in ("ci_low", "ci_high"):
        frame[bound] = frame[bound].where(np.isfinite(frame[bound]) & (frame[bound] > 0),
                                          frame["geo_mean"])
    return frame


def _band(data: pd.DataFrame, x: str, color: str, label: str, **_):
    data = data.sort_values(x)
    ax = plt.gca()
    ax.plot(data[x], data["geo_mean"], marker="o", ms=3, color=color, label=label)
    ax.fill_between(data[x], data["ci_low"], data["ci_high"], color=color, alpha=0.25, lw=0)


def _seeds_label(data: pd.DataFrame) -> str:
    n = int(data["n_seeds"].max()) if "n_seeds" in data and len(data) else 0
    return f"geometric mean over {n} seeds, 95% CI"


def layer_profile(summary: pd.DataFrame, metric: str) -> plt.Figure | None:
    """Per-layer geometric mean with CI band, plain vs residual, one panel per depth.

    ``summary`` rows of one width (and every other axis fixed), all depths."""
    data = plottable(with_variant(summary[summary["metric"] == metric]))
    data = data[data["kind"] == "weight"]
    if data.empty:
        return None
    has_depth = "depth" in data and data["depth"].nunique() > 1
    grid = sns.FacetGrid(data, col="depth" if has_depth else None, col_wrap=5 if has_depth
                         else None, hue="variant", hue_order=VARIANT_ORDER,
                         palette=VARIANT_COLORS, sharey=False, sharex=False, height=2.1,
                         aspect=1.15)
    grid.map_dataframe(_band, x="layer")
    grid.set(yscale="log")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.set_axis_labels("layer index (0 = input side)",
                         f"{METRIC_LABELS[metric]}\n({_seeds_label(data)})")
    grid.set_titles(col_template="depth {col_name}")
    grid.add_legend(title="")
    return grid.figure


def ratio_heatmap(effects: pd.DataFrame, metric: str) -> plt.Figure | None:
    """log10 residual/plain ratio of the first layer's metric over depth x width."""
    data = effects[(effects["metric"] == metric) & (effects["layer"] == 0)
                   & (effects["kind"] == "weight")]
    if data.empty or data["depth"].nunique() < 2 or data["width"].nunique() < 2:
        return None
    grid = data.pivot_table(index="depth", columns="width", values="log10_ratio")
    labels = data.assign(label=[f"{10**v:.2g}x" + ("" if s else "\nns") if np.isfinite(v)
                                else "n/a" for v, s in zip(data["log10_ratio"],
                                                           data["significant"], strict=True)])
    labels = labels.pivot_table(index="depth", columns="width", values="label", aggfunc="first")
    limit = float(np.nanmax(np.abs(grid.to_numpy()))) if np.isfinite(grid.to_numpy()).any() \
        else 1.0
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * grid.shape[1], 0.9 + 0.42 * grid.shape[0]))
    sns.heatmap(grid, annot=labels.loc[grid.index, grid.columns], fmt="", cmap="vlag",
                center=0, vmin=-limit, vmax=limit, ax=ax, annot_kws={"fontsize": 7},
                cbar_kws={"label": "log10(residual / plain)"})
    ax.set_xlabel("width")
    ax.set_ylabel("depth (layers)")
    return fig


def depth_trend(summary: pd.DataFrame, trends: pd.DataFrame, metric: str) -> plt.Figure | None:
    """First-layer metric against depth with CIs and the fitted per-seed slope, per width."""
    data = plottable(with_variant(summary[(summary["metric"] == metric)
                                          & (summary["layer"] == 0)
                                          & (summary["kind"] == "weight")]))
    if data.empty or "depth" not in data or data["depth"].nunique() < 2:
        return None
    col = "width" if "width" in data and data["width"].nunique() > 1 else None
    grid = sns.FacetGrid(data, col=col, col_wrap=5 if col else None, hue="variant",
                         hue_order=VARIANT_ORDER, palette=VARIANT_COLORS, sharey=True,
                         height=2.3, aspect=1.1)
    grid.map_dataframe(_band, x="depth")
    fits = trends[(trends["metric"] == metric) & (trends["role"] == "first")] \
        if not trends.empty else trends
    for key, ax in grid.axes_dict.items() if col else [(None, grid.ax)]:
        for variant, flag in (("plain", False), ("residual", True)):
            fit = fits
            if col:
                fit = fit[fit["width"] == key]
            if "residual" in fit:
                fit = fit[fit["residual"] == flag]
            if fit.empty or not np.isfinite(fit["slope"].iloc[0]):
                continue
            depths = np.linspace(data["depth"].min(), data["depth"].max(), 50)
            row = fit.iloc[0]
            ax.plot(depths, 10 ** (row["intercept"] + row["slope"] * depths), ls="--", lw=1,
                    color=VARIANT_COLORS[variant])
    grid.set(yscale="log")
    grid.set_axis_labels("depth (layers)",
                         f"first layer {METRIC_LABELS[metric]}\n({_seeds_label(data)})")
    grid.set_titles(col_template="width {col_name}")
    grid.add_legend(title="")
    return grid.figure


def seed_distribution(values: pd.DataFrame, metric: str) -> plt.Figure | None:
    """Every seed's value per layer for one configuration (box + points, log axis).

    ``values``: records of one cell pair with ``param``, ``layer``, ``residual``, ``metric``."""
    data = with_variant(values[np.isfinite(values[metric]) & (values[metric] > 0)])
    if data.empty:
        return None
    order = data.sort_values("layer")["param"].unique()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(order) + 1.5), 3.2))
    sns.boxplot(data=data, x="param", y=metric, hue="variant", hue_order=VARIANT_ORDER,
                palette=VARIANT_COLORS, order=order, showfliers=False, fill=False,
                log_scale=True, ax=ax, legend=False)
    sns.stripplot(data=data, x="param", y=metric, hue="variant", hue_order=VARIANT_ORDER,
                  palette=VARIANT_COLORS, order=order, dodge=True, size=2.5, alpha=0.55,
                  jitter=0.2, ax=ax)
    ax.set_xlabel("parameter")
    ax.set_ylabel(f"{METRIC_LABELS[metric]} (one point per seed)")
    ax.legend(title="", frameon=False)
    ax.tick_params(axis="x", rotation=30)
    return fig
