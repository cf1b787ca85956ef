"""Which figures a report shows, with the caption that says what to look at, the alt text a
screen reader reads, and the plotted table offered as CSV.

A figure the run's axes cannot support (a depth trend from one depth, a heatmap without two
widths) is left out rather than drawn empty. Captions quote numbers from the plotted table,
so they change when the data does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from markupsafe import Markup

from gradprobe.analysis.analyze import Analysis
from gradprobe.analysis.report import figures as fig
from gradprobe.analysis.report.headline import fmt, select
from gradprobe.analysis.report.plot_style import embed
from gradprobe.bench.store.records import read_records


@dataclass(frozen=True)
class ReportFigure:
    """A rendered figure: ``image`` is inline SVG (or a PNG ``<img>``), ``data`` the rows it
    plots (one CSV download)."""

    key: str
    title: str
    image: Markup
    caption: str
    alt: str
    data: pd.DataFrame

    def __post_init__(self) -> None:
        if not self.alt.strip() or not self.caption.strip():
            raise ValueError(f"figure {self.key}: alt text and caption are required")


def _make(key: str, title: str, draw: Callable, data: pd.DataFrame, metric: str,
          caption: Callable[[pd.DataFrame], str], alt: str) -> ReportFigure | None:
    figure = draw(data, metric) if not data.empty else None
    if figure is None:
        return None
    return ReportFigure(key, title, embed(figure, key=key, alt=alt), caption(data), alt, data)


def times(ratio: float) -> str:
    """``601 times larger`` / ``4 times smaller``: a ratio in words, never "0.25 times
    larger"."""
    return f"{fmt(ratio)} times larger" if ratio >= 1 else f"{fmt(1 / ratio)} times smaller"


def _profile_caption(data: pd.DataFrame) -> str:
    deepest = data[data["depth"] == data["depth"].max()]
    first = deepest[deepest["layer"] == 0].set_index("variant")["geo_mean"]
    gap = ""
    if {"plain", "residual"} <= set(first.index):
        gap = (f" At depth {deepest['depth'].iloc[0]} the first layer's geometric mean is "
               f"{times(first['residual'] / first['plain'])} with skips than without.")
    return ("Per-layer geometric mean over seeds with its 95% bootstrap interval (band), one "
            "panel per depth, each with its own log scale. Look at the vertical gap between "
            "the curves (the effect of skip connections) and at whether the left end (input "
            "side) sits below the right end (vanishing towards the input)." + gap)


def _ratio_caption(data: pd.DataFrame) -> str:
    shallow, deep = data["depth"].min(), data["depth"].max()
    at = data.groupby("depth")["ratio"].median()
    ns = int((~data["significant"].astype(bool)).sum())
    marks = (f"'ns' marks the {ns} of {len(data)} cells not significant" if ns else
             f"all {len(data)} cells are significant")
    return (f"Paired residual/plain ratio of the first layer's gradient (geometric mean of the "
            f"per-seed ratios). Read down a column to see the ratio grow with depth: the "
            f"median over widths is {fmt(at[shallow])}× at depth {shallow} and "
            f"{fmt(at[deep])}× at depth {deep}; read across a row to see whether width "
            f"changes it. Green means skips give larger gradients, purple smaller; "
            f"{marks} at 5% FDR (Benjamini-Hochberg).")


def _depth_caption(data: pd.DataFrame) -> str:
    fits = data.dropna(subset=["fit_factor_per_layer"]).drop_duplicates(["width", "variant"])
    factor = fits.groupby("variant")["fit_factor_per_layer"].median()
    told = "; ".join(f"{v}: ×{fmt(factor[v])} per added layer" for v in factor.index)
    slope = f" Median fitted factor over widths, {told}." if told else ""
    return ("The first layer's value against network depth, per width, on one shared log "
            "scale; dashed lines are the mean of per-seed straight-line fits. A straight "
            "line here is exponential change with depth: compare the slopes of the plain and "
            "residual curves (below 1 per layer: vanishing; above 1: exploding)." + slope)


def _seed_caption(metric: str) -> Callable[[pd.DataFrame], str]:
    def caption(data: pd.DataFrame) -> str:
        hidden = int((~fig.drawable(data[metric])).sum())
        dropped = (f" {hidden} zero or non-finite values cannot be drawn on a log axis; the "
                   "CSV keeps them." if hidden else "")
        return ("Every seed of the headline configuration, per parameter (boxes: quartiles "
                "and 1.5 IQR whiskers). Look at the spread: seeds differ by orders of "
                "magnitude, which is why the report averages on a log scale and shows "
                "intervals." + dropped)
    return caption


def build_figures(analysis: Analysis, selection: dict, metric: str) -> list[ReportFigure]:
    """The report's figures for the headline ``selection`` (axis values) and ``metric``."""
    summary, effects, trends = analysis.summary, analysis.effects, analysis.trends
    by_width = {k: v for k, v in selection.items() if k != "depth"}
    others = {k: v for k, v in selection.items() if k not in ("depth", "width")}
    name = fig.METRIC_LABELS.get(metric, metric)
    seeds = _headline_seed_values(analysis, selection, metric)
    made = [
        _make("profile", "Per-layer gradient profile", fig.layer_profile,
              fig.profile_data(select(summary, by_width), metric), metric, _profile_caption,
              f"Line charts, one per depth, of {name} against layer index on a log axis, "
              "plain in blue and residual in orange, with 95% confidence bands."),
        _make("ratio", "Residual / plain ratio over depth and width", fig.ratio_heatmap,
              fig.ratio_data(select(effects, others), metric), metric, _ratio_caption,
              f"Heatmap of the residual-to-plain ratio of the first layer's {name}, depth "
              "in rows and width in columns, each cell labelled with the ratio."),
        _make("depth", "First-layer gradient against depth", fig.depth_trend,
              fig.depth_data(select(summary, others), select(trends, others)
                             if not trends.empty else trends, metric), metric,
              _depth_caption,
              f"Line charts, one per width, of the first layer's {name} against depth on a "
              "log axis, plain and residual with 95% bands and dashed fitted lines."),
        _make("seeds", "Every seed of the headline configuration", fig.seed_distribution,
              fig.seed_data(seeds, metric), metric, _seed_caption(metric),
              f"Box and strip plot of {name} for every seed and parameter of the headline "
              "configuration, plain and residual side by side, on a log axis."),
    ]
    return [f for f in made if f is not None]


def _headline_seed_values(analysis: Analysis, selection: dict, metric: str) -> pd.DataFrame:
    cells = select(analysis.summary, selection)["cell_id"].unique().tolist()
    columns = ["cell_id", "seed", "param", "layer", "kind", "residual", metric]
    return read_records(analysis.run_dir, columns=columns, cells=cells)
