"""The report's gradient distributions: every swept value drawn, cells stated, readable at
hundreds of parameters, a training figure with [train], and the section on the page."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt
from support import check_embedded_figures

from gradprobe.analysis.report import histogram_figures as hf
from gradprobe.analysis.report.figure_selection import swept_values
from gradprobe.analysis.report.headline import headline_for
from gradprobe.analysis.report.plot_style import overlapping_tick_labels
from gradprobe.bench.plan.histogram_bins import SPECIAL_COUNTS, HistogramConfig
from gradprobe.bench.store.run_dir import RunDir


def _drawn(analysis, monkeypatch) -> dict:
    """The section's figures, each with the tick-label overlaps of the figure it embeds."""
    overlaps = check_embedded_figures(hf, monkeypatch)
    selection = headline_for(analysis).selection
    made = hf.histogram_figures(RunDir(analysis.run_dir), selection, swept_values(analysis))
    return {f.key: (f, overlaps[f.key]) for f in made}


@pytest.mark.parametrize("which", ["smoke_analysis", "transformer_analysis"])
def test_every_swept_value_is_drawn_and_no_tick_labels_overlap(which, request, monkeypatch):
    analysis = request.getfixturevalue(which)
    drawn = _drawn(analysis, monkeypatch)
    assert list(drawn) == ["histograms"]
    figure, overlaps = drawn["histograms"]
    assert overlaps == []
    for axis, values in swept_values(analysis).items():
        assert set(figure.data[axis]) == set(values), axis
        assert f"{axis} " in figure.cells and "only" not in figure.cells
    assert figure.cells.startswith("Cells shown: ")


def test_the_plotted_rows_add_up_to_the_pooled_entries(smoke_analysis, monkeypatch):
    figure, _ = _drawn(smoke_analysis, monkeypatch)["histograms"]
    data = figure.data
    hist = RunDir(smoke_analysis.run_dir).histograms()
    assert data["n_seeds"].unique().tolist() == [hist["seed"].nunique()]
    # Every drawn count is a sum over seeds; with the counts outside the range they make up
    # every entry of every parameter of every seed.
    outside = hist[list(SPECIAL_COUNTS)].to_numpy().sum()
    assert data["count"].sum() + outside == hist["numel"].sum()
    fractions = data.groupby([*swept_values(smoke_analysis), "param"])["fraction"].sum()
    assert (fractions <= 1 + 1e-12).all() and fractions.max() > 0.5


def test_training_adds_a_figure_at_three_steps_of_the_headline_cells(train_run, monkeypatch):
    from gradprobe.analysis.analyze import load_analysis

    drawn = _drawn(load_analysis(train_run), monkeypatch)
    assert list(drawn) == ["histograms", "histograms-train"]
    figure, overlaps = drawn["histograms-train"]
    assert overlaps == []
    assert sorted(figure.data["step"].unique()) == [0, 20, 30]  # first, middle, last logged
    assert set(figure.data["residual"]) == {False, True}
    assert set(figure.data["depth"]) == {3, 6}


def _many_parameters(blocks: int = 40, roles: int = 6) -> pd.DataFrame:
    """Per-seed histogram rows of a model with ``blocks * roles + 2`` parameters, plain and
    residual, 3 seeds: a stand-in for GPT-2-sized factory models."""
    bins = HistogramConfig()
    generator = np.random.default_rng(0)
    names = ["wte.weight", *[f"h.{b}.role{r}.weight" for b in range(blocks)
                             for r in range(roles)], "ln_f.weight"]
    rows = []
    for residual in (False, True):
        for seed in range(3):
            for layer, name in enumerate(names):
                centre = generator.integers(40, 160)
                counts = np.zeros(bins.n_bins, np.int64)
                counts[centre - 3:centre + 3] = 10
                rows.append({"cell_id": f"c{int(residual)}", "phase": "init", "train_id": "",
                             "step": 0, "param": name, "layer": layer, "seed": seed,
                             "numel": 60, "depth": blocks, "residual": residual,
                             "counts": counts, **dict.fromkeys(SPECIAL_COUNTS, 0)})
    return pd.DataFrame(rows)


def test_two_hundred_parameters_stay_readable():
    hist = _many_parameters()
    pooled, counts = hf.pool(hist)
    data = hf.histogram_data(pooled, counts, HistogramConfig(), [])
    assert data.groupby("variant")["y"].max().tolist() == [241, 241]
    figure = hf.histogram_heatmap(data, xlabel="log10 |g|")
    try:
        assert overlapping_tick_labels(figure) == []
        assert figure.get_size_inches()[1] <= 12  # one figure, not 242 panels
        groups = [t.get_text() for ax in figure.axes for t in ax.get_yticklabels()
                  if ax.yaxis.get_label_position() == "right"]
        assert "h.*.role0.weight" in groups  # rows grouped into role bands, named on the right
    finally:
        plt.close(figure)


def _row_names(ax: plt.Axes, data: pd.DataFrame, variant: str) -> dict[str, str]:
    """The parameter name each left-hand y tick label of ``ax`` stands next to, and the
    parameter that row draws (from ``data``)."""
    drawn = data[data["variant"] == variant].drop_duplicates("y").set_index("y")["param"]
    return {t.get_text(): drawn[int(t.get_position()[1])] for t in ax.get_yticklabels()
            if t.get_visible() and t.get_text()}


def test_heatmap_rows_are_named_by_their_parameters():
    """Bug: within a depth the heatmap's rows had no names, so a reader could not tell which
    row was which parameter; the left-hand ticks name them (thinned where 242 rows would
    overlap, each role band's first row always named), the right-hand ones the bands."""
    hist = _many_parameters()
    pooled, counts = hf.pool(hist)
    data = hf.histogram_data(pooled, counts, HistogramConfig(), [])
    figure = hf.histogram_heatmap(data, xlabel="log10 |g|")
    try:
        assert overlapping_tick_labels(figure) == []
        names = _row_names(figure.axes[0], data, "plain")
        assert all(label == param for label, param in names.items())
        assert 20 <= len(names) < 242
        assert {"wte.weight", "h.0.role1.weight", "h.0.role5.weight"} <= set(names)
        rows = sorted(int(t.get_position()[1]) for t in figure.axes[0].get_yticklabels())
        assert max(np.diff(rows)) <= 2 * 242 / len(names)  # no long stretch left unnamed
    finally:
        plt.close(figure)


def test_a_small_models_rows_are_all_named(smoke_analysis, monkeypatch):
    check_embedded_figures(hf, monkeypatch)
    pooled, counts = hf.pooled_run(RunDir(smoke_analysis.run_dir))
    data = hf.histogram_data(pooled, counts, HistogramConfig(), ["width"])
    figure = hf.histogram_heatmap(data, xlabel="log10 |g|")
    try:
        assert overlapping_tick_labels(figure) == []
        panel = data[data["panel"] == data["panel"].iloc[0]]
        names = _row_names(figure.axes[0], panel, "plain")
        assert len(names) == panel["param"].nunique() and "layers.3.weight" in names
        depths = {t.get_text() for ax in figure.axes for t in ax.get_yticklabels()
                  if ax.yaxis.get_label_position() == "right"}
        assert {"depth 2", "depth 3", "depth 4"} <= depths  # and the colour bar's decades
    finally:
        plt.close(figure)


@pytest.mark.parametrize("param,band", [
    ("layers.3.weight", "layers.*.weight"), ("norms.0.bias", "norms.*.bias"),
    ("h.11.attn.c_attn.weight", "h.*.attn.c_attn.weight"), ("head.weight", "other"),
    ("blocks.2.ff.0.weight", "blocks.*.ff.0.weight"),
])
def test_bands_star_the_block_index(param, band):
    assert hf.band(param) == band


def test_display_bins_merge_only_when_the_range_is_wide():
    narrow, wide = np.zeros((1, 180), int), np.zeros((1, 180), int)
    narrow[0, [40, 60]] = 1
    wide[0, [0, 179]] = 1
    assert hf.display_factor(narrow) == 1 and hf.display_factor(wide) == 4


def test_the_report_has_the_section(smoke_analysis, tmp_path):
    from gradprobe.analysis.report.report_page import write_report

    page = write_report(smoke_analysis.run_dir, out=tmp_path / "index.html",
                        analysis=smoke_analysis).read_text(encoding="utf-8")
    assert '<section id="distributions">' in page and 'href="#distributions"' in page
    assert 'id="figure-histograms"' in page and "Cells shown: depth 2, 3, 4" in page
