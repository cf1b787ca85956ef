"""The report's "Gradient distributions": pooled histograms of log10 |g| per parameter.

What TensorBoard and ``wandb.watch`` show per parameter, for every seed at once: the
histogram records (:mod:`gradprobe.bench.store.histogram_records`) summed over seeds and
drawn as a heatmap, one row per parameter, log10 |g| along x, the fraction of the pooled
entries in each bin as colour (log scale). A heatmap stays readable at hundreds of
parameters (one pixel row each) where small multiples would not.

Layout: one column of panels per variant (plain, residual; or as built); one row of panels
per value combination of the swept axes other than ``residual`` and ``depth``; inside a
panel the swept depths are stacked (thin white lines between them, input side at the top of
each), and within a depth the parameters are grouped by role (``layers.*.weight``,
``h.*.attn.c_attn.weight``, via :mod:`gradprobe.analysis.report.param_groups`) in block
order, so every swept value is drawn. Rows are named by their parameters on the left (all
where :data:`LABEL_INCHES` apart fits, else each group's first row and every k-th), and by
their depth (or role band) on the right. Training adds a second figure: the headline
configuration at the first, a middle and the last logged step.
"""

from __future__ import annotations

import bisect
import textwrap

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.colors import LogNorm
from matplotlib.ticker import FixedLocator, MaxNLocator

from gradprobe.analysis.report.figure_selection import ReportFigure, cells_shown
from gradprobe.analysis.report.figures import with_variant
from gradprobe.analysis.report.param_groups import block_role
from gradprobe.analysis.report.plot_style import embed, variant_label
from gradprobe.bench.plan.histogram_bins import SPECIAL_COUNTS, HistogramConfig
from gradprobe.bench.store.histogram_records import count_matrix
from gradprobe.bench.store.records import AXIS_COLUMNS
from gradprobe.bench.store.run_dir import RunDir

MAX_COLUMNS = 64  # display bins across the occupied range; finer stored bins are merged
COARSEN = (1, 2, 4, 8, 16)  # stored bins merged per display bin
LABEL_INCHES = 0.15  # vertical room one y tick label needs (7 pt text)
CHAR_INCHES = 0.055  # width of an average character of 7 pt DejaVu Sans
COLORMAP = "viridis"  # sequential, colour-blind safe, clear of the variant colours' meaning
SEEDS_PER_READ = 1000  # cells x seeds read at once: ~50 MB of rows at 32 parameters a cell
KEYS = ["cell_id", "phase", "train_id", "step", "param", "layer"]


def band(param: str) -> str:
    """The parameter's name with its block index starred (``h.3.attn.c_attn.weight`` ->
    ``h.*.attn.c_attn.weight``); parameters outside blocks share the band ``other``."""
    block, role = block_role(param)
    if block is None:
        return "other"
    prefix = param[: len(param) - len(role) - 1].rsplit(".", 1)[0]
    return f"{prefix}.*.{role}"


def pool(hist: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Sum the per-seed counts over seeds: one row per (cell, phase, setup, step, param)
    with the axis columns, ``numel``, ``n_seeds`` and the summed :data:`SPECIAL_COUNTS`,
    and the summed bin counts ``(rows, n_bins)`` in the same order."""
    keys = [k for k in KEYS if k in hist]
    groups = hist.groupby(keys, sort=False, observed=True)
    index = groups.ngroup().to_numpy()
    counts = np.zeros((groups.ngroups, count_matrix(hist.iloc[:1]).shape[1]), np.int64)
    np.add.at(counts, index, count_matrix(hist))
    axes = [c for c in AXIS_COLUMNS if c in hist]
    frame = groups[[*axes, "numel"]].first().reset_index()
    frame["n_seeds"] = groups["seed"].nunique().to_numpy()
    specials = groups[list(SPECIAL_COUNTS)].sum().reset_index(drop=True)
    return pd.concat([frame, specials], axis=1), counts


def pooled_run(run_dir: RunDir) -> tuple[pd.DataFrame, np.ndarray | None]:
    """:func:`pool` of every planned cell, read and pooled :data:`SEEDS_PER_READ` seeds'
    worth of cells at a time: the per-seed rows of a large sweep (a million for
    ``large.toml``, 1.5 KB each) never sit in memory together. An empty frame when the run
    has no histogram records."""
    cells = run_dir.manifest.cell_ids
    step = max(1, SEEDS_PER_READ // len(run_dir.manifest.config.seeds))
    parts = [pool(hist) for start in range(0, len(cells), step)
             if not (hist := run_dir.histograms(cells=cells[start:start + step])).empty]
    if not parts:
        return pd.DataFrame(), None
    return (pd.concat([p for p, _ in parts], ignore_index=True),
            np.concatenate([c for _, c in parts]))


def display_factor(counts: np.ndarray) -> int:
    """How many stored bins one displayed bin merges, so that the occupied range of the
    figure spans at most :data:`MAX_COLUMNS` displayed bins."""
    occupied = np.flatnonzero(counts.sum(axis=0))
    span = occupied[-1] - occupied[0] + 1 if occupied.size else 1
    return next((k for k in COARSEN if span / k <= MAX_COLUMNS), COARSEN[-1])


def _rows_in_order(frame: pd.DataFrame, panel_axes: list[str]) -> pd.DataFrame:
    """Adds ``variant``, ``panel`` (the values of ``panel_axes``), ``group`` (the depth) and
    ``y`` (row within its panel: by depth, then role band, then block)."""
    frame = with_variant(frame)
    frame["panel"] = [", ".join(f"{a} {v}" for a, v in zip(panel_axes, row, strict=True))
                      for row in frame[panel_axes].itertuples(index=False)] \
        if panel_axes else ""
    frame["band"] = frame["param"].map(band)
    frame["block"] = [block_role(p)[0] if block_role(p)[0] is not None else -1
                      for p in frame["param"]]
    first_layer = frame.groupby("band")["layer"].transform("min")
    frame = frame.assign(_band_rank=first_layer).sort_values(
        [*panel_axes, "variant", "depth", "_band_rank", "band", "block", "layer"])
    frame["group"] = "depth " + frame["depth"].astype(str)
    frame["y"] = frame.groupby(["panel", "variant"]).cumcount()
    return frame.drop(columns="_band_rank")


def histogram_data(pooled: pd.DataFrame, counts: np.ndarray, bins: HistogramConfig,
                   panel_axes: list[str]) -> pd.DataFrame:
    """The rows a histogram figure draws: one per (cell, step, parameter, displayed bin with
    a non-zero count): the axis columns, ``variant``, ``panel``, ``group``, ``param``,
    ``y``, ``bin_low`` and ``bin_high`` (log10 |g|), ``count`` (summed over ``n_seeds``
    seeds) and ``fraction`` (of the ``numel * n_seeds`` pooled entries)."""
    factor = display_factor(counts)
    merged = counts[:, : counts.shape[1] // factor * factor]
    merged = merged.reshape(len(counts), -1, factor).sum(axis=2)
    rows = _rows_in_order(pooled.assign(_i=np.arange(len(pooled))), panel_axes)
    row_index, bin_index = np.nonzero(merged[rows["_i"].to_numpy()])
    picked = rows.iloc[row_index].drop(columns=["_i", "band", "block"]).reset_index(drop=True)
    low = bins.low + bin_index * bins.step * factor
    total = (picked["numel"] * picked["n_seeds"]).to_numpy()
    count = merged[rows["_i"].to_numpy()][row_index, bin_index]
    return picked.assign(bin_low=low, bin_high=low + bins.step * factor, count=count,
                         fraction=count / total)


def csv_view(data: pd.DataFrame, panel_axes: list[str]) -> pd.DataFrame:
    """The columns of :func:`histogram_data` that its CSV download keeps."""
    return data[[c for c in _csv_columns(data, panel_axes) if c in data]]


def _csv_columns(frame: pd.DataFrame, panel_axes: list[str]) -> list[str]:
    """What the CSV keeps: the axes that vary, the parameter, its row ``y`` and the bin;
    constant config columns are in the manifest and the panel labels follow from the axes,
    so neither is repeated on thousands of rows (``bin_high`` is ``bin_low`` plus the
    caption's bin width)."""
    varying = [c for c in AXIS_COLUMNS if frame[c].nunique(dropna=False) > 1]
    training = ["train_id", "step"] if (frame["phase"] == "train").any() else []
    return list(dict.fromkeys([*varying, "depth", "residual", *panel_axes,
                               *training, "param", "y", "bin_low", "count", "n_seeds",
                               "fraction"]))


def _label_ticks(ax: plt.Axes, positions: list[float], labels: list[str],
                 rows: int, inches: float) -> None:
    """Y tick labels at ``positions`` (row units), dropping any that would sit closer to
    the previous kept one than :data:`LABEL_INCHES`: labels never overlap."""
    gap = LABEL_INCHES * rows / inches
    kept, last = [], -np.inf
    for position, label in sorted(zip(positions, labels, strict=True)):
        if position - last >= gap:
            kept.append((position, label))
            last = position
    ax.yaxis.set_major_locator(FixedLocator([p for p, _ in kept]))
    ax.set_yticklabels([label for _, label in kept], fontsize=7)


def _groups(data: pd.DataFrame) -> pd.DataFrame:
    """The first (``min``) and last (``max``) row of each group of a panel's rows, indexed
    by its label: the depths, or the role bands when the panel has one depth."""
    by = "group" if data["group"].nunique() > 1 else "band_label"
    return data.groupby(by, sort=False)["y"].agg(["min", "max"])


def _panel(ax: plt.Axes, data: pd.DataFrame, edges: np.ndarray, norm: LogNorm):
    """One heatmap: rows ``y``, columns the displayed bins, groups (:func:`_groups`)
    separated by white lines. Its rows are named by :func:`_name_rows` once laid out."""
    rows = int(data["y"].max()) + 1
    grid = np.full((rows, len(edges) - 1), np.nan)
    column = np.searchsorted(edges, data["bin_low"].to_numpy() + 1e-9) - 1
    grid[data["y"].to_numpy(), column] = data["fraction"].to_numpy()
    mesh = ax.pcolormesh(edges, np.arange(rows + 1), np.ma.masked_invalid(grid), norm=norm,
                         cmap=COLORMAP, rasterized=True)
    ax.set_ylim(rows, 0)  # input side at the top
    for start in _groups(data)["min"].iloc[1:]:
        ax.axhline(start, color="white", lw=0.8)
    return mesh


def named_rows(data: pd.DataFrame, rows_per_label: int) -> list[int]:
    """The rows of a panel whose parameter is named, at least ``rows_per_label`` apart:
    each group's first row where it fits, then every ``rows_per_label``-th row of each
    group, so that no stretch of rows goes unnamed."""
    spans = _groups(data)
    strided = [y for low, high in spans.itertuples(index=False)
               for y in range(low, high + 1, rows_per_label)]
    kept: list[int] = []
    for y in [*spans["min"], *strided]:
        i = bisect.bisect_left(kept, y)
        if all(abs(y - k) >= rows_per_label for k in kept[max(0, i - 1):i + 1]):
            kept.insert(i, y)
    return kept


def _name_rows(ax: plt.Axes, data: pd.DataFrame, *, names: bool, groups: bool) -> None:
    """Label a laid-out panel's rows: parameter names on the left (``names``; all where
    they fit :data:`LABEL_INCHES` apart in the drawn height, else :func:`named_rows`), the
    groups on a right-hand axis (``groups``), so that both can be read at once."""
    rows = int(data["y"].max()) + 1
    inches = ax.get_window_extent().height / ax.figure.dpi
    stride = max(1, int(np.ceil(LABEL_INCHES * rows / inches)))
    params = data.drop_duplicates("y").set_index("y")["param"]
    picked = named_rows(data, stride)
    _label_ticks(ax, [y + 0.5 for y in picked], [params[y] for y in picked], rows, inches)
    ax.tick_params(axis="y", labelleft=names)
    if groups:
        spans = _groups(data)
        twin = ax.twinx()
        twin.set_ylim(rows, 0)
        _label_ticks(twin, list((spans["min"] + spans["max"] + 1) / 2), list(spans.index),
                     rows, inches)


def _figure_layout(data: pd.DataFrame) -> tuple[list[str], list[str], list[float]]:
    """Panel rows, variant columns, and each panel row's height: a row of
    :data:`LABEL_INCHES` per parameter (every one named) up to 5 inches."""
    panels = list(dict.fromkeys(data["panel"]))
    variants = [v for v in ("plain", "residual") if v in set(data["variant"])]
    heights = [min(5.0, 0.7 + LABEL_INCHES * (data.loc[data["panel"] == p, "y"].max() + 1))
               for p in panels]
    return panels, variants, heights


def _figure_width(data: pd.DataFrame, n_variants: int) -> float:
    """Inches: 3 per variant, and room for the longest parameter name on the left and
    group label on the right (7 pt text, about :data:`CHAR_INCHES` a character)."""
    longest = data["param"].str.len().max() + max(data["group"].str.len().max(),
                                                  data["band_label"].str.len().max())
    return 1.0 + 3.0 * n_variants + CHAR_INCHES * longest


def histogram_heatmap(data: pd.DataFrame, *, xlabel: str) -> plt.Figure | None:
    """Heatmaps of ``data`` (:func:`histogram_data`): rows of panels by ``panel``, columns by
    ``variant``, one shared colour scale and x range; parameters named on the left of
    each row of panels, depths (or role bands) on its right."""
    if data.empty:
        return None
    data = data.assign(band_label=data["param"].map(band))
    panels, variants, heights = _figure_layout(data)
    step = float((data["bin_high"] - data["bin_low"]).iloc[0])
    edges = np.arange(data["bin_low"].min(), data["bin_high"].max() + step / 2, step)
    norm = LogNorm(vmin=max(float(data["fraction"].min()), 1e-7), vmax=1.0)
    fig, axes = plt.subplots(len(panels), len(variants), squeeze=False, sharex=True,
                             figsize=(_figure_width(data, len(variants)), 0.9 + sum(heights)),
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    drawn: dict[int, list] = {}
    for (i, panel), (j, variant) in ((p, v) for p in enumerate(panels)
                                     for v in enumerate(variants)):
        ax, part = axes[i, j], data[(data["panel"] == panel) & (data["variant"] == variant)]
        if part.empty:
            ax.set_axis_off()
            continue
        mesh = _panel(ax, part, edges, norm)
        drawn.setdefault(i, []).append((ax, part))
        name = variant_label(variant)
        ax.set_title(textwrap.fill(f"{panel}: {name}" if panel else name, 48), fontsize=7.5)
    for ax in axes[-1]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        ax.set_xlabel(xlabel)
    bar = fig.colorbar(mesh, ax=axes, shrink=min(1.0, 4.0 / sum(heights)), pad=0.06)
    bar.set_label("fraction of the pooled entries (log scale)")
    fig.draw_without_rendering()  # lay out once: names are thinned to the drawn height
    for row in drawn.values():
        for k, (ax, part) in enumerate(row):
            _name_rows(ax, part, names=k == 0, groups=k == len(row) - 1)
    return fig


# -- the report's figures --------------------------------------------------------------------

def histogram_figures(run_dir: RunDir, selection: dict, swept: dict[str, list]
                      ) -> list[ReportFigure]:
    """The section's figures: every cell at initialisation, and (with ``[train]``) the
    headline ``selection`` over training; [] for a run without histogram records."""
    bins = run_dir.config.histograms
    pooled, counts = pooled_run(run_dir) if bins is not None else (pd.DataFrame(), None)
    if pooled.empty:
        return []
    at_init = (pooled["phase"] == "init").to_numpy()
    figures = [_init_figure(pooled[at_init], counts[at_init], bins, swept)]
    if not at_init.all():
        figures.append(_train_figure(pooled[~at_init], counts[~at_init], bins, selection,
                                     swept))
    return [f for f in figures if f is not None]


def _make(key: str, title: str, data: pd.DataFrame, panel_axes: list[str], caption: str,
          alt: str, swept: dict[str, list]) -> ReportFigure | None:
    figure = histogram_heatmap(data, xlabel="log10 |∂L/∂θ| (bin)")
    if figure is None:
        return None
    return ReportFigure(key, title, embed(figure, key=key, alt=alt), caption, alt,
                        csv_view(data, panel_axes), cells_shown(data, swept))


def _outside(pooled: pd.DataFrame, bins: HistogramConfig) -> str:
    """What the heatmap cannot show, as shares of all pooled entries."""
    total = float((pooled["numel"] * pooled["n_seeds"]).sum())
    parts = [f"{pooled[name].sum() / total:.2%} {what}" for name, what in (
        ("n_zero", "are exactly zero"), ("n_under", f"lie below 10^{bins.low:g}"),
        ("n_over", f"at or above 10^{bins.high:g}"), ("n_nonfinite", "are NaN or inf"))
        if pooled[name].sum()]
    return (" Not drawn: " + ", ".join(parts) + " (the CSV has the drawn bins, the histogram "
            "records every count)." if parts else "")


def _init_figure(pooled, counts, bins, swept) -> ReportFigure | None:
    panel_axes = [a for a in swept if a not in ("residual", "depth") and a in pooled]
    data = histogram_data(pooled, counts, bins, panel_axes)
    n = int(pooled["n_seeds"].max())
    both = "residual" in pooled and pooled["residual"].nunique() > 1
    caption = (f"Histogram of log10 |gradient| of every parameter at initialisation, pooled "
               f"over {n} seeds (counts summed, one row per parameter, input side at the top "
               "of each depth; rows grouped by role, then block; parameter names on the left, "
               "evenly thinned where they would overlap (the CSV names every row), depths or "
               "role bands on the right). Colour is the fraction of "
               "the pooled entries in each bin, on one log scale for all panels. Look at "
               "where the mass sits and how it moves from row to row"
               + (": in a plain deep network it slides left (smaller gradients) towards the "
                  "input side; skip connections keep it in place" if both else
                  " (towards the input side, and from depth to depth)")
               + f". Bins: {_bins_text(bins, data)}." + _outside(pooled, bins))
    alt = (("Heatmaps, plain and residual side by side, " if both else "A heatmap ")
           + "of the distribution of log10 absolute gradient (x) for every parameter (rows), "
           "colour the fraction of entries per bin.")
    return _make("histograms", "Gradient distributions at initialisation", data, panel_axes,
                 caption, alt, swept)


def _train_figure(pooled, counts, bins, selection, swept) -> ReportFigure | None:
    keep = np.ones(len(pooled), bool)
    for key, value in selection.items():
        if key in pooled and key not in ("residual", "depth"):
            keep &= (pooled[key] == value).to_numpy()
    pooled, counts = pooled[keep], counts[keep]
    steps = np.unique(pooled["step"])
    shown = steps[[0, len(steps) // 2, -1]] if len(steps) > 2 else steps
    at = pooled["step"].isin(shown).to_numpy()
    panel_axes = ["train_id", "step"] if pooled["train_id"].nunique() > 1 else ["step"]
    data = histogram_data(pooled[at], counts[at], bins, panel_axes)
    caption = ("The same histograms during training, for the headline configuration (every "
               "swept depth), at the first, a middle and the last logged step: does the "
               "distribution that sat far left at initialisation move right as the network "
               f"trains? Bins: {_bins_text(bins, data)}." + _outside(pooled[at], bins))
    alt = ("Heatmaps, one row of panels per training step, plain and residual side by side, "
           "of the distribution of log10 absolute gradient for every parameter.")
    return _make("histograms-train", "Gradient distributions during training", data,
                 panel_axes, caption, alt, swept)


def _bins_text(bins: HistogramConfig, data: pd.DataFrame) -> str:
    shown = float((data["bin_high"] - data["bin_low"]).iloc[0]) if len(data) else bins.step
    merged = f", drawn merged into {shown:g}-decade bins" if shown != bins.step else ""
    return f"{bins.n_bins} of {bins.step:g} decades from {bins.low:g} to {bins.high:g}{merged}"
