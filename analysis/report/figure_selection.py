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
from gradprobe.analysis.report import block_figures as blocks
from gradprobe.analysis.report import figures as fig
from gradprobe.analysis.report.headline import fmt, select
from gradprobe.analysis.report.param_groups import is_blocked
from gradprobe.analysis.report.plot_style import embed, variant_label
from gradprobe.analysis.report.width_figures import width_check, width_data
from gradprobe.analysis.stats.series import varying_axes
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
    cells: str = ""  # which values of each swept axis it shows (:func:`cells_shown`)

    def __post_init__(self) -> None:
        if not self.alt.strip() or not self.caption.strip():
            raise ValueError(f"figure {self.key}: alt text and caption are required")


def _values(values) -> str:
    values = sorted(pd.unique(pd.Series(values)).tolist(), key=lambda v: (str(type(v)), v))
    return ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)


def cells_shown(data: pd.DataFrame, swept: dict[str, list]) -> str:
    """``Cells shown: depth 2, 3, 4; width 8 only (of 8, 16); residual false, true.``: per
    swept axis, the values present in the figure's rows, saying which ones it leaves out."""
    parts = []
    for axis, values in swept.items():
        if axis not in data or data.empty:
            continue
        shown = set(pd.unique(data[axis]))
        if shown >= set(values):
            parts.append(f"{axis} {_values(values)}")
        else:
            parts.append(f"{axis} {_values(list(shown))} only (of {_values(values)})")
    return "Cells shown: " + "; ".join(parts) + "." if parts else ""


def _make(key: str, title: str, draw: Callable, data: pd.DataFrame, metric: str,
          caption: Callable[[pd.DataFrame], str], alt: str,
          swept: dict[str, list] | None = None) -> ReportFigure | None:
    figure = draw(data, metric) if not data.empty else None
    if figure is None:
        return None
    return ReportFigure(key, title, embed(figure, key=key, alt=alt), caption(data), alt, data,
                        cells_shown(data, swept or {}))


def times(ratio: float) -> str:
    """``601 times larger`` / ``4 times smaller``: a ratio in words, never "0.25 times
    larger"."""
    return f"{fmt(ratio)} times larger" if ratio >= 1 else f"{fmt(1 / ratio)} times smaller"


def _profile_caption(data: pd.DataFrame) -> str:
    deepest = data[data["depth"] == data["depth"].max()]
    deepest = deepest[deepest["setting"] == deepest["setting"].iloc[0]]
    first = deepest[deepest["layer"] == 0].set_index("variant")["geo_mean"]
    gap = ""
    if {"plain", "residual"} <= set(first.index):
        where = f", {deepest['setting'].iloc[0]}" if deepest["setting"].iloc[0] else ""
        gap = (f" At depth {deepest['depth'].iloc[0]}{where} the first layer's geometric mean "
               f"is {times(first['residual'] / first['plain'])} with skips than without.")
    return ("Per-layer geometric mean over seeds with its 95% t interval (band), one "
            "panel per depth, all on one log scale. Look at the vertical gap between "
            "the curves (the effect of skip connections) and at whether the left end (input "
            "side) sits below the right end (vanishing towards the input)." + gap)


def _block_caption(data: pd.DataFrame) -> str:
    if data["variant"].nunique() == 1 and data["depth"].nunique() > 1:
        return _block_depth_caption(data)
    first = data[data["block"] == data["block"].min()]
    gaps = first.groupby(["setting", "role", "variant"])["geo_mean"].first().unstack("variant")
    gap = ""
    if {"plain", "residual"} <= set(gaps.columns) and len(gaps):
        ratios = (gaps["residual"] / gaps["plain"]).dropna()
        if len(ratios):
            gap = (f" In block 0 the residual/plain ratio of the geometric means ranges from "
                   f"{fmt(ratios.min())} to {fmt(ratios.max())} over roles and settings.")
    return ("Per-block geometric mean over seeds with its 95% t interval (band), "
            f"at the deepest swept depth ({int(data['depth'].max())}), one panel per "
            "parameter role (the name after the block index), all on one log scale. Look at "
            "the gap between the curves (the effect of skip connections) and at "
            "whether block 0 sits below the last block (vanishing towards the input)." + gap)


def _block_depth_caption(data: pd.DataFrame) -> str:
    """Caption of the block profile of one variant over depths: how block 0 moves as the
    model deepens, per role."""
    first = data[data["block"] == 0].groupby(["setting", "role", "depth"])["geo_mean"].first()
    change = first.unstack("depth")
    shallow, deep = change.columns.min(), change.columns.max()
    ratios = (change[deep] / change[shallow]).dropna()
    moved = (f" From depth {shallow} to {deep}, block 0's geometric mean changes by a factor "
             f"of {fmt(ratios.min())} to {fmt(ratios.max())} over roles.") if len(ratios) else ""
    return ("Per-block geometric mean over seeds with its 95% confidence band, one line per "
            "swept depth, one panel per parameter role (the name after the block index), all "
            "on one log scale. Look at whether block 0 (input side) sits below the last "
            "block, and whether the whole curve drops as blocks are added (vanishing with "
            "depth) or stays level." + moved)


def _ratio_caption(data: pd.DataFrame) -> str:
    shallow, deep = data["depth"].min(), data["depth"].max()
    at = data.groupby("depth")["ratio"].median()
    ns = int((~data["significant"].astype(bool)).sum())
    marks = (f"'ns' and hatching mark the {ns} of {len(data)} cells not significant" if ns else
             f"all {len(data)} cells are significant")
    return (f"Paired residual/plain ratio of the first layer's gradient (the median seed's "
            f"ratio). Read down a column to see the ratio grow with depth: the "
            f"median over widths is {fmt(at[shallow])}× at depth {shallow} and "
            f"{fmt(at[deep])}× at depth {deep}; read across a row to see whether width "
            f"changes it. The second line of a cell is its 95% sign-test interval. Green "
            f"means skips give larger gradients, purple smaller; {marks} at 5% FDR "
            "(Benjamini-Hochberg).")


def _depth_caption(data: pd.DataFrame) -> str:
    fits = data.dropna(subset=["fit_factor_per_layer"]).drop_duplicates(["width", "variant"])
    factor = fits.groupby("variant")["fit_factor_per_layer"].median()
    told = "; ".join(f"{variant_label(v)}: ×{fmt(factor[v])} per added layer"
                     for v in factor.index)
    slope = f" Median fitted factor over widths, {told}." if told else ""
    compare = ("compare the slopes of the plain and residual curves" if
               data["variant"].nunique() > 1 else "read its slope")
    return ("The input-side weight's value against network depth, per width, on one shared "
            "log scale; dashed lines are the mean of per-seed straight-line fits. A straight "
            f"line here is exponential change with depth: {compare} (below 1 per layer: "
            "vanishing; above 1: exploding)." + slope)


def _width_caption(data: pd.DataFrame) -> str:
    fits = data.drop_duplicates(["metric", "variant", "param"]).dropna(subset=["exponent"])
    flat = fits[(fits["exponent_low"] <= 0) & (fits["exponent_high"] >= 0)]
    return ("The coordinate check of muP (Yang et al. 2021): each quantity against width on "
            "log-log axes at the headline depth; a flat line keeps its size as the network "
            "widens, slope a means it scales as width^a. Exponents are fitted per seed "
            "(least squares on log10 values) and averaged over seeds with a 95% t "
            f"interval. {len(flat)} of {len(fits)} fitted exponents have an interval that "
            "includes 0 (no detectable change with width).")


def _seed_caption(metric: str, blocked: bool = False) -> Callable[[pd.DataFrame], str]:
    def caption(data: pd.DataFrame) -> str:
        hidden = int((~fig.drawable(data[metric])).sum())
        dropped = (f" {hidden} zero or non-finite values cannot be drawn on a log axis; the "
                   "CSV keeps them." if hidden else "")
        return ("Every seed of the headline configuration, per parameter (boxes: quartiles "
                "and 1.5 IQR whiskers). Look at the spread: seeds differ by orders of "
                "magnitude, which is why the report averages on a log scale and shows "
                "intervals." + dropped
                + (" Only the input-side block and the parameters outside blocks are shown; "
                   "the CSV has the same rows." if blocked else ""))
    return caption


def swept_values(analysis: Analysis) -> dict[str, list]:
    """Each axis that varies in the run with its values, in sweep order."""
    summary = analysis.summary
    return {a: list(pd.unique(summary[a])) for a in varying_axes(summary)}


def build_figures(analysis: Analysis, selection: dict, metric: str) -> list[ReportFigure]:
    """The report's figures for the headline ``selection`` (axis values) and ``metric``.
    Axes other than depth, width and residual are never fixed at the headline value: each
    of their values gets its own row of panels (the ``setting``)."""
    summary, effects, trends = analysis.summary, analysis.effects, analysis.trends
    swept = swept_values(analysis)
    settings = [a for a in swept if a not in ("depth", "width", "residual")]
    by_width = {k: v for k, v in selection.items() if k == "width"}
    no_width = {k: v for k, v in selection.items() if k != "width"}
    name = fig.METRIC_LABELS.get(metric, metric)
    seeds = _headline_seed_values(analysis, selection, metric)
    blocked = is_blocked(summary["param"])
    if blocked:
        profile = _make("profile", "Per-block gradient profile, by role", blocks.block_profile,
                        blocks.block_profile_data(select(summary, by_width), metric, settings),
                        metric, _block_caption,
                        f"Line charts, one panel per parameter role, of {name} against "
                        "block index on one shared log axis, with 95% confidence bands: "
                        "plain (blue, solid) and residual (orange, dashed), or one line "
                        "per depth for a single variant.", swept)
    else:
        profile = _make("profile", "Per-layer gradient profile", fig.layer_profile,
                        fig.profile_data(select(summary, by_width), metric, settings), metric,
                        _profile_caption,
                        f"Line charts, one per depth, of {name} against layer index on one "
                        "shared log axis, plain (blue, solid) and residual (orange, dashed) "
                        "with 95% confidence bands.", swept)
    made = [
        profile,
        _make("ratio", "Residual / plain ratio over depth and width", fig.ratio_heatmap,
              fig.ratio_data(effects, metric, settings), metric, _ratio_caption,
              f"Heatmap of the residual-to-plain ratio of the first layer's {name}, depth "
              "in rows and width in columns, each cell labelled with the ratio and its 95% "
              "interval, not-significant cells hatched.", swept),
        _make("depth", "First-layer gradient against depth", fig.depth_trend,
              fig.depth_data(summary, trends, metric, settings), metric, _depth_caption,
              f"Line charts, one per width, of the first layer's {name} against depth on a "
              "log axis, plain and residual with 95% bands and dashed fitted lines.", swept),
        _make("width", "Width coordinate check", width_check,
              width_data(select(summary, no_width), analysis.width), metric, _width_caption,
              "Log-log charts of the RMS of each layer's output and of its mean absolute "
              "weight gradient against width, one colour per parameter, plain and residual "
              "in separate panels, with dashed fitted power laws.", swept),
        _make("seeds", "Every seed of the headline configuration", fig.seed_distribution,
              fig.seed_data(seeds, metric, blocked=blocked).assign(**selection), metric,
              _seed_caption(metric, blocked),
              f"Box and strip plot of {name} for every seed and parameter of the headline "
              "configuration, plain and residual side by side, on a log axis.", swept),
    ]
    return [f for f in made if f is not None]


def headline_figure(analysis: Analysis, selection: dict, metric: str) -> ReportFigure | None:
    """For a model of repeated blocks: the headline cell's residual/plain ratio per role and
    block, the result the per-role table cannot show at a glance; None for the MLP."""
    if not is_blocked(analysis.summary["param"]) or analysis.effects.empty:
        return None
    data = blocks.role_ratio_data(select(analysis.effects, selection), metric)
    name = fig.METRIC_LABELS.get(metric, metric)
    return _make("headline", "Residual / plain ratio per block and role", blocks.role_ratios,
                 data, metric, _role_ratio_caption,
                 f"Line chart of the paired residual-to-plain ratio of {name} against block "
                 "index, one line per parameter role, with 95% intervals, on a log axis.",
                 swept_values(analysis))


def _role_ratio_caption(data: pd.DataFrame) -> str:
    ratios = data["ratio"].dropna()
    ns = int((~data["significant"].astype(bool)).sum())
    return (f"Paired residual/plain ratio (median of per-seed ratios, 95% sign-test "
            f"interval) of every weight inside a block of the headline configuration: from "
            f"{fmt(ratios.min())}× to {fmt(ratios.max())}× (median {fmt(ratios.median())}×); "
            f"below the dotted line skips make the gradient smaller. {ns} of {len(data)} "
            "ratios are not significant at 5% FDR (Benjamini-Hochberg; hollow markers).")


def _headline_seed_values(analysis: Analysis, selection: dict, metric: str) -> pd.DataFrame:
    cells = select(analysis.summary, selection)["cell_id"].unique().tolist()
    columns = ["cell_id", "seed", "param", "layer", "kind", "residual", metric]
    return read_records(analysis.run_dir, columns=columns, cells=cells)
