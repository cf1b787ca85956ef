"""Figures: what they plot, how they are labelled, and how they go into the page."""

from __future__ import annotations

import base64
import math
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from gradprobe.analysis.report import figures as fig
from gradprobe.analysis.report.figure_selection import build_figures
from gradprobe.analysis.report.plot_style import decade_stride, decade_ticks, embed, to_svg


@pytest.fixture(scope="module")
def built(smoke_analysis):
    from gradprobe.analysis.report.headline import headline_for

    headline = headline_for(smoke_analysis)
    return {f.key: f for f in build_figures(smoke_analysis, headline.selection,
                                            headline.metric)}


@pytest.mark.parametrize("ratio,significant,label", [
    (601.2, True, "600×"), (3.44, True, "3.4×"), (17.1, True, "17×"),
    (5.4e32, True, "5.4e32×"), (0.004, True, "4.0e-3×"), (2.0, False, "2×\nns"),
    (math.nan, True, "n/a"),
])
def test_ratio_labels_are_short_and_plain(ratio, significant, label):
    assert fig.ratio_label(ratio, significant) == label


@pytest.mark.parametrize("decades,stride", [(0.5, 1), (6, 1), (7, 2), (12, 2), (13, 3),
                                            (30, 5), (33, 10), (64, 20)])
def test_decade_stride_keeps_at_most_six_labelled_decades(decades, stride):
    assert decade_stride(decades) == stride


def test_log_ticks_sit_on_whole_decades_at_an_even_stride():
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1e-31, 1e3])
    ax.set_yscale("log")
    decade_ticks(ax)
    low, high = ax.get_ylim()
    exponents = [round(math.log10(t)) for t in ax.get_yticks() if low <= t <= high]
    plt.close(figure)
    assert len(exponents) <= 6 and len(set(np.diff(exponents))) == 1
    assert all(e % np.diff(exponents)[0] == 0 for e in exponents)


def test_seeds_label_counts_seeds_and_says_when_some_were_excluded():
    full = pd.DataFrame({"n_used": [16, 16], "n_seeds": [16, 16]})
    assert fig.seeds_label(full) == "geometric mean over 16 seeds, 95% CI"
    some = pd.DataFrame({"n_used": [14, 16], "n_seeds": [16, 16]})
    assert fig.seeds_label(some) == "geometric mean over 14-16 of 16 seeds, 95% CI"


def test_plotted_tables_hold_what_the_figures_draw(built, smoke_analysis):
    profile = built["profile"].data
    assert len(profile) == (2 + 3 + 4) * 2  # layers of depths 2-4, plain and residual
    assert set(profile["variant"]) == {"plain", "residual"} and (profile["width"] == 8).all()
    assert (profile["ci_low"] <= profile["geo_mean"]).all()
    ratio = built["ratio"].data
    assert len(ratio) == 6 and (ratio["layer"] == 0).all()  # 3 depths x 2 widths
    depth = built["depth"].data
    assert depth["fit_slope"].notna().all() and len(depth) == 3 * 2 * 2
    seeds = built["seeds"].data
    assert len(seeds) == 16 * 3 * 2 and seeds["seed"].nunique() == 16


def test_axes_name_quantity_unit_and_statistic(built):
    texts = {k: re.findall(r">([^<>]+)</text>", str(f.image)) for k, f in built.items()}
    for key in ("profile", "depth"):
        assert "geometric mean over 16 seeds, 95% CI" in texts[key], key
        assert any("unitless, log scale" in t for t in texts[key]), key
    assert "layer index (0 = input side)" in texts["profile"]
    assert "depth (Linear layers)" in texts["depth"]
    assert {"width (hidden units)", "depth (Linear layers)"} <= set(texts["ratio"])
    assert {"plain", "residual"} <= set(texts["seeds"])
    for key, labels in texts.items():  # integer axes never show fractional ticks
        assert not any(re.fullmatch(r"\d+\.5", t) for t in labels), key


def test_every_figure_has_alt_text_a_caption_and_one_colour_per_variant(built):
    assert list(built) == ["profile", "ratio", "depth", "width", "seeds"]
    for key, figure in built.items():
        assert figure.alt in str(figure.image) or figure.alt.replace("'", "&#39;") in str(
            figure.image)
        assert re.search(r"\d", figure.caption), key  # captions quote the data
    for key in ("profile", "depth", "seeds"):
        colours = set(re.findall(r"#[0-9a-f]{6}", str(built[key].image).lower()))
        assert {"#0072b2", "#d55e00"} <= colours, key


def test_svg_ids_are_prefixed_so_figures_can_share_a_page():
    svgs = []
    for key in ("a", "b"):
        figure, ax = plt.subplots()
        ax.plot([1, 2], [1, 2])
        svgs.append(to_svg(figure, key))
        plt.close(figure)
    ids = [set(re.findall(r'\bid="([^"]+)"', s)) for s in svgs]
    assert ids[0] and not ids[0] & ids[1]
    assert all(i.startswith("svg-a-") for i in ids[0])
    refs = re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', svgs[0])
    assert all(r in ids[0] for pair in refs for r in pair if r)
    assert not svgs[0].startswith("<?xml") and "<metadata>" not in svgs[0]


def test_an_svg_over_budget_becomes_a_png_with_alt_text():
    figure, ax = plt.subplots()
    ax.plot(range(100), range(100))
    html = str(embed(figure, key="big", alt='a "quoted" line', budget=1000))
    match = re.fullmatch(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)" '
                         r'width="(\d+)" height="(\d+)">', html)
    assert match, html[:200]
    assert base64.b64decode(match[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert match[2] == "a &#34;quoted&#34; line" and int(match[3]) > 100


def test_captions_put_ratios_in_words():
    from gradprobe.analysis.report.figure_selection import times

    assert times(601.2) == "601 times larger" and times(0.25) == "4 times smaller"


# -- any model: every swept value plotted, readable ticks ----------------------------------

# Axes a figure fixes by design (and says so in its "Cells shown"); every other swept value
# must be in its rows. The per-block profile shows the deepest depth only.
HEADLINE_CELL = {"depth", "width", "norm_position"}
FIXED_BY_DESIGN = {"profile": {"width"}, "ratio": set(), "depth": set(),
                   "seeds": HEADLINE_CELL, "headline": HEADLINE_CELL,
                   "width": HEADLINE_CELL - {"width"}}


def _drawn_figures(analysis, monkeypatch) -> dict:
    """The report's figures, each with the live matplotlib Figure it embeds."""
    from support import check_embedded_figures

    from gradprobe.analysis.report import figure_selection
    from gradprobe.analysis.report.headline import headline_for

    overlaps = check_embedded_figures(figure_selection, monkeypatch)
    headline = headline_for(analysis)
    made = figure_selection.build_figures(analysis, headline.selection, headline.metric)
    top = figure_selection.headline_figure(analysis, headline.selection, headline.metric)
    return {f.key: (f, overlaps[f.key]) for f in [*made, *([top] if top else [])]}


@pytest.mark.parametrize("which", ["smoke_analysis", "transformer_analysis", "gpt2_analysis"])
def test_no_swept_value_is_missing_from_any_figure(which, request, monkeypatch):
    from gradprobe.analysis.report.figure_selection import swept_values

    analysis = request.getfixturevalue(which)
    swept = swept_values(analysis)
    drawn = _drawn_figures(analysis, monkeypatch)
    for key, (figure, _) in drawn.items():
        deepest = {"depth"} if key == "profile" and which == "transformer_analysis" else set()
        fixed = FIXED_BY_DESIGN[key] | deepest
        for axis, values in swept.items():
            if axis in figure.data and axis not in fixed:
                missing = set(values) - set(figure.data[axis])
                assert not missing, f"{which} {key}: {axis} {missing} not plotted"
            elif axis in figure.data and len(set(figure.data[axis])) < len(values):
                assert f"{axis} " in figure.cells and "only" in figure.cells, (key, axis)
    for axis, values in swept.items():  # and every value is in some figure
        seen = set().union(*(set(f.data[axis]) for f, _ in drawn.values() if axis in f.data))
        assert seen >= set(values), axis


@pytest.mark.parametrize("which", ["smoke_analysis", "transformer_analysis", "gpt2_analysis"])
def test_no_figure_has_overlapping_tick_labels(which, request, monkeypatch):
    drawn = _drawn_figures(request.getfixturevalue(which), monkeypatch)
    assert drawn and {key: o for key, (_, o) in drawn.items() if o} == {}


def test_overlap_check_sees_crowded_labels():
    from gradprobe.analysis.report.plot_style import overlapping_tick_labels

    figure, ax = plt.subplots(figsize=(2, 2))
    ax.set_xticks(range(40), [f"blocks.{i}.attn.weight" for i in range(40)])
    assert overlapping_tick_labels(figure)
    plt.close(figure)


def test_a_factory_model_gets_per_role_profiles_by_block(transformer_analysis, monkeypatch):
    drawn = _drawn_figures(transformer_analysis, monkeypatch)
    assert list(drawn) == ["profile", "depth", "seeds", "headline"]  # no width: no heatmap
    profile = drawn["profile"][0].data
    assert profile["role"].nunique() == 6 and set(profile["block"]) == {0, 1, 2}
    assert set(profile["setting"]) == {"norm_position pre", "norm_position post"}
    assert "depth 3 only (of 2, 3)" in drawn["profile"][0].cells
    seeds = drawn["seeds"][0].data  # the input-side block and what lies outside blocks
    assert not seeds["param"].str.startswith(("blocks.1.", "blocks.2.")).any()
    assert seeds["param"].str.startswith("head.").any()


def test_profile_panels_share_one_y_range_and_variants_differ_in_line_style(built):
    figure = fig.layer_profile(built["profile"].data, "grad_mean_abs")
    limits = {ax.get_ylim() for ax in figure.axes if ax.get_visible() and ax.lines}
    styles = {line.get_linestyle() for ax in figure.axes for line in ax.lines}
    plt.close(figure)
    assert len(limits) == 1 and {"-", "--"} <= styles


def test_heatmap_cells_carry_their_interval_and_hatch_the_not_significant():
    data = pd.DataFrame({"depth": [2, 2, 4, 4], "width": [8, 16, 8, 16],
                         "setting": [""] * 4, "n_pairs": [8] * 4,
                         "ratio": [1.1, 3.0, 50.0, 60.0], "ci_low": [0.8, 2.0, 30.0, 40.0],
                         "ci_high": [1.5, 4.0, 80.0, 90.0],
                         "log10_ratio": np.log10([1.1, 3.0, 50.0, 60.0]),
                         "significant": [False, True, True, True]})
    figure = fig.ratio_heatmap(data, "grad_mean_abs")
    texts = [t.get_text() for t in figure.axes[0].texts]
    hatched = [p for p in figure.axes[0].patches if p.get_hatch()]
    plt.close(figure)
    assert "1.1×\n0.8-1.5×\nns" in texts and "3×\n2-4×" in texts and len(hatched) == 1
