"""Findings: what the data shows, in plain words, each sentence backed by a number and CI.

Sentences are generated from the analysis tables, never written by hand, so they change
when the data does. A claim that the data does not support at the 5% false discovery rate
is stated as "not significant" rather than left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gradprobe.analysis.analyze import Analysis
from gradprobe.analysis.report.headline import BLOG_CELL, fmt, fmt_ci, fmt_p, select
from gradprobe.analysis.report.param_groups import numbered_layers


def _p(p: float) -> str:
    shown = fmt_p(p)
    return f"adjusted p {shown}" if shown.startswith("<") else f"adjusted p = {shown}"


# The exact two-sided signed-rank test's smallest p-value is 2 / 2**n: 0.0625 at 5 pairs.
MIN_TESTABLE_PAIRS = 6


def _verdict(row: pd.Series) -> str:
    """``adjusted p = 0.003``, or ``not significant, ...``, saying so when the seed pairs
    are too few for the signed-rank test to reach 5% at all (the interval can still exclude
    1 there: below 6 pairs it is the range of the pairs, whose level is under 95%)."""
    if row["significant"]:
        return _p(row["p_adjusted"])
    pairs = row.get("n_pairs", np.nan)
    few = (f"; with {int(pairs)} seed pairs the signed-rank test cannot reach p < 0.05, "
           f"run at least {MIN_TESTABLE_PAIRS} seeds"
           if np.isfinite(pairs) and pairs < MIN_TESTABLE_PAIRS else "")
    return f"not significant, {_p(row['p_adjusted'])}{few}"


def _where(selection: dict[str, Any], keys=("depth", "width")) -> str:
    return ", ".join(f"{k} {selection[k]}" for k in keys if k in selection)


def _layer_names(analysis: Analysis, selection: dict) -> dict[str, str]:
    """What the findings call the input- and output-side weights: the blog's MLP has
    "layers"; a factory model has named parameters (``transformer.wte.weight``), which are
    not layers, so they are named (``first``, ``output``, ``unit`` per added depth step)."""
    rows = select(analysis.summary, selection)
    weights = rows[rows["kind"] == "weight"].sort_values("layer")
    names = weights.drop_duplicates("layer")["param"].tolist()
    if not names or numbered_layers(names):
        return {"first": "the first layer", "output": "the output layer", "unit": "layer"}
    return {"first": f"{names[0]} (the input-side weight)",
            "output": f"{names[-1]} (the output-side weight)", "unit": "block"}


def _layer_name(analysis: Analysis, selection: dict, layer: int) -> str:
    """``layer 3`` for the MLP, the parameter's name for a factory model."""
    rows = select(analysis.summary, selection)
    rows = rows[(rows["layer"] == layer) & (rows["kind"] == "weight")]
    name = rows["param"].iloc[0] if len(rows) else f"layers.{layer}"
    return f"layer {layer}" if numbered_layers([name]) else name


def headline_effect(analysis: Analysis, selection: dict, metric: str) -> list[str]:
    """First-layer gradient plain vs residual in the headline cell."""
    rows = select(analysis.summary, selection)
    rows = rows[(rows["metric"] == metric) & (rows["layer"] == 0) & (rows["kind"] == "weight")]
    effect = select(analysis.effects, selection) if not analysis.effects.empty else rows[:0]
    if rows.empty or effect.empty or "residual" not in rows:
        return []
    effect = effect[(effect["metric"] == metric) & (effect["layer"] == 0)
                    & (effect["kind"] == "weight")].iloc[0]
    plain, res = (rows[rows["residual"] == flag].iloc[0] for flag in (False, True))
    blog = all(selection.get(k) == v for k, v in BLOG_CELL.items())
    name = "the blog's configuration" if blog else "the headline configuration"
    if np.isfinite(effect["ratio"]):
        direction = "larger" if effect["ratio"] > 1 else "smaller"
        # The paired ratio is the median seed pair's (effects.py), not the quotient of the
        # two geometric means quoted before it.
        ratio = (f"per seed pair {fmt_ci(effect['ratio'], effect['ci_low'], effect['ci_high'])}"
                 f" times {direction} (median; {_verdict(effect)})")
    else:
        ratio = "no seed pair has a finite ratio to summarise"
    first = _layer_names(analysis, selection)["first"]
    return [f"In {name} ({_where(selection)}), the {metric} of {first} "
            f"is {fmt_ci(plain['geo_mean'], plain['ci_low'], plain['ci_high'])} "
            f"without skip connections and "
            f"{fmt_ci(res['geo_mean'], res['ci_low'], res['ci_high'])} with them "
            f"(geometric means over {int(plain['n_used'])} and {int(res['n_used'])} seeds): "
            f"{ratio}{_left_out(effect)}."]


def _left_out(effect: pd.Series) -> str:
    """Clause for seed pairs the median ratio could not use."""
    excluded = int(effect.get("n_excluded", 0))
    if not excluded:
        return ""
    one_side = int(effect.get("n_one_side_zero", 0))
    ranked = (f"; {one_side} of them have exactly one side zero, which the signed-rank test "
              "counts as the most extreme pairs") if one_side else ""
    return (f"; the ratio uses {int(effect['n_pairs'])} seed pairs and leaves out {excluded} "
            f"with a zero or non-finite side{ranked}")


def early_layers(analysis: Analysis, selection: dict, metric: str, *,
                 as_built: bool = False) -> list[str]:
    """Do gradients vanish "especially in early layers"? The first layer against the output
    layer per seed (a paired test), then where the smallest geometric mean lies."""
    contrasts = select(analysis.contrasts, selection)
    contrasts = contrasts[contrasts["metric"] == metric]
    names = _layer_names(analysis, selection)
    out = []
    for _, row in contrasts.iterrows():
        variant = "in the model as built" if as_built else \
            "with skips" if row.get("residual", False) else "without skips"
        if not np.isfinite(row["ratio"]):
            continue
        relation = ("smaller than" if row["ratio"] < 1 else "larger than") \
            if row["significant"] else "not significantly different from"
        out.append(f"{variant[0].upper()}{variant[1:]}, the {metric} of {names['first']} is "
                   f"{fmt_ci(row['ratio'], row['ci_low'], row['ci_high'])} times that of "
                   f"{names['output']} ({_verdict(row)}): the input side's gradient is "
                   f"{relation} the output side's."
                   f"{_smallest_layer(analysis, selection, metric, row)}")
    return out


def _smallest_layer(analysis: Analysis, selection: dict, metric: str, row: pd.Series) -> str:
    """Where, among all layers of the cell, the geometric mean is smallest: the test above
    compares two layers only, and "especially in early layers" is about all of them."""
    rows = select(analysis.summary, {**selection, "residual": row.get("residual", False)})
    rows = rows[(rows["metric"] == metric) & (rows["kind"] == "weight")
                & np.isfinite(rows["geo_mean"])].sort_values("layer")
    if len(rows) < 3:
        return ""
    low = rows.loc[rows["geo_mean"].idxmin()]
    first = rows.iloc[0]
    names = _layer_names(analysis, selection)
    if low["layer"] == first["layer"]:
        return (f" {names['first'][0].upper()}{names['first'][1:]} also has the smallest "
                "geometric mean of all weights.")
    overlap = low["ci_high"] >= first["ci_low"]
    lowest = _layer_name(analysis, selection, int(low["layer"]))
    return (f" The smallest geometric mean is {lowest}'s, "
            f"{fmt_ci(low['geo_mean'], low['ci_low'], low['ci_high'])}, against "
            f"{fmt_ci(first['geo_mean'], first['ci_low'], first['ci_high'])} for "
            f"{names['first']}{' (the intervals overlap)' if overlap else ''}: gradients do "
            f"not shrink towards the input {names['unit']} by {names['unit']}.")


def depth_slopes(analysis: Analysis, selection: dict, metric: str, *,
                 as_built: bool = False) -> list[str]:
    """Per-layer factor of the first layer's metric as depth grows, per variant."""
    trends = analysis.trends
    if trends.empty:
        return []
    trends = select(trends, {k: v for k, v in selection.items() if k != "depth"})
    trends = trends[(trends["metric"] == metric) & (trends["role"] == "first")]
    names = _layer_names(analysis, selection)
    out = []
    for _, row in trends.iterrows():
        if not np.isfinite(row["slope"]):
            continue
        variant = "as-built" if as_built else "residual" if row.get("residual", False) \
            else "plain"
        excluded = int(row["n_seeds"] - row["n_used"])
        note = (f"; {excluded} seeds with a zero or non-finite value at some depth are "
                "excluded") if excluded else ""
        out.append(f"Each extra {names['unit']} multiplies the {metric} of {names['first']} "
                   f"in the {variant} network (width {row.get('width', '?')}) by "
                   f"{fmt_ci(row['factor_per_layer'], row['factor_low'], row['factor_high'])} "
                   f"(log10 slope {fmt(row['slope'])} per {names['unit']} over depths "
                   f"{row['depths']}, "
                   f"{int(row['n_used'])} seeds{note}).")
    return out


def dead_seeds(analysis: Analysis, metric: str, first: str = "the first layer") -> list[str]:
    """Cells where some seeds have exactly zero or non-finite gradients of the input-side
    weight (``first`` names it)."""
    rows = analysis.summary[(analysis.summary["metric"] == metric)
                            & (analysis.summary["layer"] == 0)
                            & (analysis.summary["kind"] == "weight")]
    bad = rows[(rows["n_zero"] > 0) | (rows["n_nonfinite"] > 0)]
    if bad.empty:
        seeds = int(rows["n_seeds"].max()) if len(rows) else 0
        return [f"None of the {seeds} seeds had a zero or non-finite {metric} of {first} in "
                f"any of the {len(rows)} configurations."]
    worst = bad.sort_values("n_zero", ascending=False).iloc[0]
    where = ", ".join(f"{k} {worst[k]}" for k in ("depth", "width", "residual") if k in worst)
    return [f"In {len(bad)} of {len(rows)} configurations some seeds had an exactly zero "
            f"(dead ReLUs or float underflow) or non-finite {metric} of {first}; these seeds "
            f"are counted and excluded from the log-scale statistics, which then describe the "
            f"surviving seeds only. The most affected is {where}: {int(worst['n_zero'])} of "
            f"{int(worst['n_seeds'])} seeds zero, {int(worst['n_nonfinite'])} non-finite."]


def structural_zeros(analysis: Analysis, metric: str) -> list[str]:
    """Parameters whose gradient is zero in exact arithmetic
    (:mod:`gradprobe.analysis.stats.structural`):
    their gradient statistics describe rounding noise, and the report must say so."""
    summary = analysis.summary
    if "structural_zero" not in summary:  # an analysis made before the flag existed
        return []
    rows = summary[(summary["metric"] == metric) & summary["structural_zero"].astype(bool)]
    if rows.empty:
        return []
    params = ", ".join(sorted(rows["param"].unique())[:5])
    more = ", ..." if rows["param"].nunique() > 5 else ""
    return [f"{len(rows)} parameter series ({params}{more}) in {rows['cell_id'].nunique()} "
            f"configurations are structurally zero: their gradient is zero in exact "
            f"arithmetic, and the recorded {metric} (at most 1024 eps of the rounding scale) "
            f"is rounding noise, not gradient flow."]


def overall_effects(analysis: Analysis, metric: str,
                    first: str = "the first layer") -> list[str]:
    """How often the residual/plain difference of ``first`` (the input-side weight, named
    as the findings name it) is significant across the sweep."""
    effects = analysis.effects
    if effects.empty:
        return []
    rows = effects[(effects["metric"] == metric) & (effects["layer"] == 0)
                   & (effects["kind"] == "weight")]
    sig = rows[rows["significant"]]
    larger = int((sig["ratio"] > 1).sum())
    smallest, largest = rows["ratio"].min(), rows["ratio"].max()
    return [f"Across {len(rows)} plain/residual pairs of configurations, skip connections "
            f"change the {metric} of {first} significantly in {len(sig)} (larger in "
            f"{larger}, smaller in {len(sig) - larger}; Benjamini-Hochberg over "
            f"{int(effects['p_adjusted'].notna().sum())} tests at FDR 5%); the ratio ranges "
            f"from {fmt(smallest)} to {fmt(largest)}."]


def findings(analysis: Analysis, selection: dict, metric: str, *,
             as_built: bool = False) -> list[str]:
    """All findings, most specific first. ``as_built``: the run's models have the skips
    their architecture has, so no sentence says "without skips"
    (:mod:`gradprobe.analysis.report.variants`)."""
    first = _layer_names(analysis, selection)["first"]
    return [*headline_effect(analysis, selection, metric),
            *early_layers(analysis, selection, metric, as_built=as_built),
            *depth_slopes(analysis, selection, metric, as_built=as_built),
            *overall_effects(analysis, metric, first),
            *dead_seeds(analysis, metric, first),
            *structural_zeros(analysis, metric)]
