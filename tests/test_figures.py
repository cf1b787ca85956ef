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
    assert list(built) == ["profile", "ratio", "depth", "seeds"]
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
