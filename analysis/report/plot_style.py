"""The look every gradprobe figure shares, and how a figure goes into a self-contained page.

* One colour per variant, the same in every figure, legend and table: the Okabe-Ito palette
  (Okabe & Ito 2008), which stays distinguishable under the common colour-vision
  deficiencies. The report's CSS uses the same two values (``--plain``, ``--residual``).
* Log axes get ticks at whole decades only, evenly strided, so ``1e-4, 1e-13, 1e-22`` never
  appears; integer axes (layer index, depth) never get fractional ticks.
* Legends sit above the panels, outside the data.
* :func:`embed` inlines a figure as SVG, or as a PNG data URI when the SVG would be too big
  to keep the report light (many thousands of seed points).
"""

from __future__ import annotations

import base64
import io
import itertools
import math
import re
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from markupsafe import Markup, escape
from matplotlib.lines import Line2D
from matplotlib.ticker import (
    FixedLocator,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from gradprobe.analysis.report.variants import AS_BUILT

VARIANT_COLORS = {"plain": "#0072B2", "residual": "#D55E00"}  # Okabe-Ito blue, vermillion
VARIANT_ORDER = ["plain", "residual"]
# Line style and marker per variant, so the two never differ by colour alone.
VARIANT_STYLES = {"plain": {"ls": "-", "marker": "o"}, "residual": {"ls": "--", "marker": "s"}}
# Colours and markers for series that are not variants (parameter roles, layers): the
# Okabe-Ito/seaborn colour-blind palette without its blues and oranges, which mean plain and
# residual everywhere else; markers cycle with another period so pairs stay distinct.
SERIES_COLORS = ["#029E73", "#CC78BC", "#CA9161", "#949494", "#6A3D9A", "#56B4E9"]
SERIES_MARKERS = ["o", "s", "^", "D", "v", "P", "X"]


def series_style(i: int) -> dict:
    """Colour and marker of the ``i``-th non-variant series."""
    return {"color": SERIES_COLORS[i % len(SERIES_COLORS)],
            "marker": SERIES_MARKERS[i % len(SERIES_MARKERS)]}


# Diverging map for residual/plain ratios: purple-green stays clear of the two variant
# colours (a blue-red map would read as "plain" vs "residual") and is colour-blind safe
# (ColorBrewer PRGn).
RATIO_CMAP = "PRGn"
SVG_BUDGET = 1_000_000  # bytes of inline SVG per figure before falling back to a PNG
PNG_DPI = 200
MAX_DECADE_TICKS = 6

plt.rcParams.update({
    "svg.fonttype": "none",  # text stays text: selectable, searchable, small
    # Written into every SVG <text>: a short list keeps the page small; DejaVu Sans is what
    # matplotlib lays the text out with, the others have close metrics.
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "figure.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
})


# The variants figure legends name, and how (gradprobe.analysis.report.variants): set for
# one report by `labelled_variants`, since every figure function draws its own legend.
_variant_labels: dict[str, str] = {v: v for v in VARIANT_ORDER}


@contextmanager
def labelled_variants(labels: Mapping[str, str]) -> Iterator[None]:
    """Within the block, legends show only the variants in ``labels``, under those names
    (``{"plain": "as built"}`` for models whose skips the ``residual`` flag did not switch)."""
    global _variant_labels
    saved, _variant_labels = _variant_labels, dict(labels)
    try:
        yield
    finally:
        _variant_labels = saved


def variant_label(variant: str) -> str:
    """The name of ``variant`` in this report (:func:`labelled_variants`)."""
    return _variant_labels.get(variant, variant)


# A model as built (its skips not switched by the `residual` flag) is not "plain": grey, as
# on the history page and the site (the CSS's --as-built), not plain's blue.
AS_BUILT_COLOR = "#666666"


def variant_colors() -> dict[str, str]:
    """``{variant: colour}`` in this report (:func:`labelled_variants`): plain's blue turns
    grey where "plain" names models as built."""
    colors = dict(VARIANT_COLORS)
    if _variant_labels.get("plain") == AS_BUILT:
        colors["plain"] = AS_BUILT_COLOR
    return colors


def variant_handles(*, fit: bool = False, theory: bool = False) -> list[Line2D]:
    """Legend entries for plain and residual (and the fitted and theory lines, if drawn)."""
    colors = variant_colors()
    handles = [Line2D([], [], color=colors[v], ms=3, label=_variant_labels[v],
                      **VARIANT_STYLES[v]) for v in VARIANT_ORDER if v in _variant_labels]
    if fit:
        handles.append(Line2D([], [], color="#555555", ls="--", lw=1,
                              label="fit: mean of per-seed slopes"))
    if theory:
        handles.append(Line2D([], [], color="black", ls=":", lw=1.6,
                              label="mean-field slope (plain ReLU)"))
    return handles


def legend_on_top(fig: plt.Figure, handles: list) -> None:
    """One legend row centred above all panels, never over the data."""
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0),
               ncol=len(handles), frameon=False)


def shared_labels(fig: plt.Figure, xlabel: str, ylabel: str) -> None:
    """One x and one y label for all panels (a per-panel y label repeats on every row and
    collides with the row below), then a layout that makes room for them."""
    for ax in fig.axes:
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.supxlabel(xlabel, fontsize=plt.rcParams["axes.labelsize"])
    fig.supylabel(ylabel, fontsize=plt.rcParams["axes.labelsize"])
    fig.tight_layout()


def decade_stride(decades: float) -> int:
    """The smallest stride in 1, 2, 3, 5, 10, 20, ... decades that labels at most
    :data:`MAX_DECADE_TICKS` ticks over a span of ``decades``."""
    k = 0
    while True:
        for step in (1, 2, 3, 5):
            if decades / (step * 10**k) <= MAX_DECADE_TICKS:
                return step * 10**k
        k += 1


def decade_ticks(ax: plt.Axes, axis: str = "y") -> None:
    """Major ticks at 10**(k * stride), so ``1e-4, 1e-13, 1e-22`` never appears; minor ticks
    only when every decade is labelled."""
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    if low <= 0 or high <= 0:
        return
    target = ax.yaxis if axis == "y" else ax.xaxis
    if math.floor(math.log10(high)) - math.ceil(math.log10(low)) < 1:
        # Fewer than two whole decades inside: widen to the enclosing decades, so that the
        # axis is labelled by decades, not by crowded minor labels (2x10^-2, 3x10^-2, ...).
        low, high = 10.0 ** math.floor(math.log10(low)), 10.0 ** math.ceil(math.log10(high))
        (ax.set_ylim if axis == "y" else ax.set_xlim)(low, high)
    stride = decade_stride(math.log10(high) - math.log10(low))
    target.set_major_locator(LogLocator(base=10.0**stride))
    target.set_minor_formatter(NullFormatter())
    if stride > 1:
        target.set_minor_locator(NullLocator())


def integer_ticks(ax: plt.Axes, values=None, axis: str = "x") -> None:
    """Whole-number ticks: at ``values`` when there are few of them, else evenly spaced."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    if values is not None and len(values) <= 8:
        target.set_major_locator(FixedLocator(sorted(values)))
    else:
        target.set_major_locator(MaxNLocator(integer=True, nbins=6))


def overlapping_tick_labels(fig: plt.Figure) -> list[str]:
    """Pairs of tick labels of one axis whose drawn boxes overlap (``"a / b"``), measured
    with the renderer's text extents: empty for a readable figure."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            boxes = [t.get_window_extent(renderer) for t in labels]
            for i, j in itertools.combinations(range(len(labels)), 2):
                if boxes[i].overlaps(boxes[j]):
                    found.append(f"{labels[i].get_text()} / {labels[j].get_text()}")
    return found


def to_svg(fig: plt.Figure, key: str) -> str:
    """The figure as an ``<svg>`` element for inlining in HTML (no prolog, no metadata).

    matplotlib names elements ``figure_1``, ``axes_1``, ... in every figure; ids must be
    unique in an HTML document (and ``url(#clip)`` would resolve to another figure's clip
    path), so every id and reference gets the prefix ``svg-<key>-``."""
    buffer = io.StringIO()
    with plt.rc_context({"svg.hashsalt": "gradprobe"}):  # stable ids: same input, same file
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: it is inlined in HTML
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    prefix = f"svg-{key}-"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m[1]}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m[1]})", svg)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m[1]}"', svg)


def to_png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight")
    return buffer.getvalue()


def embed(fig: plt.Figure, *, key: str, alt: str, budget: int = SVG_BUDGET) -> Markup:
    """Inline SVG with ``role="img"`` and ``aria-label``; a PNG ``<img>`` with ``alt`` when the
    SVG exceeds ``budget`` bytes. Closes the figure."""
    try:
        svg = to_svg(fig, key)
        if len(svg.encode("utf-8")) <= budget:
            label = f'<svg role="img" aria-label="{escape(alt)}" '
            return Markup(svg.replace("<svg ", label, 1))
        png = to_png(fig)
        width, height = struct.unpack(">II", png[16:24])  # the PNG header's IHDR chunk
        scale = 96 / PNG_DPI  # CSS pixels per image pixel: same size on the page as the SVG
        data = base64.b64encode(png).decode("ascii")
        return Markup(f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" '
                      f'width="{round(width * scale)}" height="{round(height * scale)}">')
    finally:
        plt.close(fig)
