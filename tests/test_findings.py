"""Findings sentences: the numbers they quote, and claims only the data supports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradprobe.analysis.analyze import Analysis
from gradprobe.analysis.report.findings import (
    early_layers,
    findings,
    headline_effect,
    structural_zeros,
)


def summary_rows(geo: list[float], residual: bool = False) -> list[dict]:
    return [{"depth": 5, "width": 10, "residual": residual, "metric": "grad_mean_abs",
             "kind": "weight", "layer": i, "param": f"layers.{i}.weight", "geo_mean": g,
             "ci_low": g / 2, "ci_high": g * 2, "n_used": 10, "n_seeds": 10, "n_zero": 0,
             "n_nonfinite": 0} for i, g in enumerate(geo)]


def analysis_with(summary: list[dict], contrasts: list[dict], effects=()) -> Analysis:
    empty = pd.DataFrame()
    return Analysis(Path("."), pd.DataFrame(summary), pd.DataFrame(list(effects)), empty,
                    pd.DataFrame(contrasts), {})


CONTRAST = {"depth": 5, "width": 10, "residual": False, "metric": "grad_mean_abs",
            "ratio": 0.25, "ci_low": 0.2, "ci_high": 0.3, "p_adjusted": 1e-5,
            "significant": True}
SELECTION = {"depth": 5, "width": 10}


def test_first_vs_output_sentence_names_exactly_what_was_tested():
    """Bug: the sentence said "early layers are smaller than the last one" from a test of the
    first against the output layer only, while a middle layer had the smallest gradient."""
    analysis = analysis_with(summary_rows([6e-6, 4e-6, 5e-6, 5e-6, 2.4e-5]), [CONTRAST])
    (sentence,) = early_layers(analysis, SELECTION, "grad_mean_abs")
    assert sentence.startswith("Without skips, the grad_mean_abs of the first layer is 0.25 "
                               "[0.2, 0.3] times that of the output layer")
    assert "the input side's gradient is smaller than the output side's" in sentence
    assert "early layers are" not in sentence
    assert "The smallest geometric mean is layer 1's, 4.00e-06 [2.00e-06, 8.00e-06]" in sentence
    assert "(the intervals overlap)" in sentence


def test_first_layer_smallest_and_not_significant():
    rows = summary_rows([1e-6, 4e-6, 5e-6])
    contrast = {**CONTRAST, "ratio": 0.9, "ci_low": 0.5, "ci_high": 1.5, "p_adjusted": 0.4,
                "significant": False}
    (sentence,) = early_layers(analysis_with(rows, [contrast]), SELECTION, "grad_mean_abs")
    assert "not significant, adjusted p = 0.4" in sentence
    assert "not significantly different from the output side's" in sentence
    assert sentence.endswith("The first layer also has the smallest geometric mean of all "
                             "weights.")


def test_headline_sentence_says_how_many_pairs_the_ratio_left_out():
    rows = summary_rows([6e-6, 5e-6]) + summary_rows([0.04, 0.05], residual=True)
    effect = {"depth": 5, "width": 10, "metric": "grad_mean_abs", "layer": 0, "kind": "weight",
              "ratio": 6000.0, "ci_low": 3000.0, "ci_high": 11000.0, "p_adjusted": 1e-6,
              "significant": True, "n_pairs": 7, "n_excluded": 3, "n_one_side_zero": 2}
    (sentence,) = headline_effect(analysis_with(rows, [], [effect]), SELECTION,
                                  "grad_mean_abs")
    assert sentence.endswith("the ratio uses 7 seed pairs and leaves out 3 with a zero or "
                             "non-finite side; 2 of them have exactly one side zero, which "
                             "the signed-rank test counts as the most extreme pairs.")


def test_headline_sentence_without_any_finite_pair():
    """Bug: a run whose every seed was non-finite read "n/a times smaller"."""
    rows = summary_rows([float("nan")]) + summary_rows([float("nan")], residual=True)
    nan = float("nan")
    effect = {"depth": 5, "width": 10, "metric": "grad_mean_abs", "layer": 0, "kind": "weight",
              "ratio": nan, "ci_low": nan, "ci_high": nan, "p_adjusted": nan,
              "significant": False, "n_pairs": 0, "n_excluded": 10, "n_one_side_zero": 0}
    (sentence,) = headline_effect(analysis_with(rows, [], [effect]), SELECTION,
                                  "grad_mean_abs")
    assert "n/a times" not in sentence
    assert "no seed pair has a finite ratio to summarise; the ratio uses 0 seed pairs" in sentence


def test_structurally_zero_parameters_are_named_in_the_findings():
    """Issue 14, item 6: a gradient zero in exact arithmetic is labelled in the report."""
    rows = summary_rows([1e-2, 3e-9])
    for row, dead in zip(rows, (False, True), strict=True):
        row.update(cell_id="c1", structural_zero=dead)
    (sentence,) = structural_zeros(analysis_with(rows, []), "grad_mean_abs")
    assert sentence.startswith("1 parameter series (layers.1.weight) in 1 configurations")
    assert "rounding noise" in sentence
    for row in rows:
        row["structural_zero"] = False
    assert structural_zeros(analysis_with(rows, []), "grad_mean_abs") == []


def test_findings_of_a_factory_model_name_its_parameters_not_layers():
    """Bug: a GPT-2 report said "Without skips, the first layer's grad_mean_abs ... The
    smallest geometric mean is layer 20's": GPT-2 has skips (the factory takes no
    ``residual``), and its parameters are named, not numbered layers."""
    names = ["transformer.wte.weight", "transformer.h.0.ln_1.weight", "transformer.ln_f.weight"]
    rows = [{**row, "param": name} for row, name in
            zip(summary_rows([6e-3, 1e-4, 2e-3]), names, strict=True)]
    contrast = {**CONTRAST, "ratio": 3.0, "ci_low": 2.5, "ci_high": 3.5}
    trend = {"width": 10, "residual": False, "metric": "grad_mean_abs", "role": "first",
             "slope": -0.001, "factor_per_layer": 0.997, "factor_low": 0.99,
             "factor_high": 1.0, "depths": "2,4,8", "n_seeds": 8, "n_used": 8}
    analysis = Analysis(Path("."), pd.DataFrame(rows), pd.DataFrame(), pd.DataFrame([trend]),
                        pd.DataFrame([contrast]), {})
    said = " ".join(findings(analysis, SELECTION, "grad_mean_abs", as_built=True))
    assert "In the model as built, the grad_mean_abs of transformer.wte.weight (the " \
           "input-side weight) is 3 [2.5, 3.5] times that of transformer.ln_f.weight" in said
    assert "The smallest geometric mean is transformer.h.0.ln_1.weight's" in said
    assert "Each extra block multiplies the grad_mean_abs of transformer.wte.weight" in said
    assert "as-built network" in said
    for wrong in ("first layer", "skips", "plain", "layer 1"):
        assert wrong not in said, wrong


def test_overall_effects_name_the_weight_not_a_table():
    """Bug: the sentence across the sweep printed a whole DataFrame ("change the
    grad_mean_abs of p_adjusted significant 0 2 10 ... [50 rows x 40 columns]"): the name
    of the weight was overwritten by the rows it summarises."""
    from gradprobe.analysis.report.findings import overall_effects

    effects = [{"metric": "grad_mean_abs", "layer": 0, "kind": "weight", "ratio": r,
                "significant": s, "p_adjusted": p}
               for r, s, p in ((6000.0, True, 1e-6), (0.9, False, 0.4))]
    (sentence,) = overall_effects(analysis_with([], [], effects), "grad_mean_abs")
    assert sentence.startswith("Across 2 plain/residual pairs of configurations, skip "
                               "connections change the grad_mean_abs of the first layer "
                               "significantly in 1 (larger in 1, smaller in 0;")
    assert "rows x" not in sentence and "p_adjusted" not in sentence


def test_too_few_seeds_for_the_signed_rank_test_is_said():
    """Review: `bench gpt2 --seeds 4` read "4.45 [3.9, 5.09] times ... (not significant,
    adjusted p = 0.12)" with no word that 4 pairs can never give p < 0.05 (2 / 2**4)."""
    contrast = {**CONTRAST, "ratio": 4.45, "ci_low": 3.9, "ci_high": 5.09, "p_adjusted": 0.125,
                "significant": False, "n_pairs": 4}
    (sentence,) = early_layers(analysis_with(summary_rows([1e-6, 4e-6, 5e-6]), [contrast]),
                               SELECTION, "grad_mean_abs")
    assert ("not significant, adjusted p = 0.12; with 4 seed pairs the signed-rank test "
            "cannot reach p < 0.05, run at least 6 seeds") in sentence
    enough = {**contrast, "n_pairs": 6}
    (sentence,) = early_layers(analysis_with(summary_rows([1e-6, 4e-6, 5e-6]), [enough]),
                               SELECTION, "grad_mean_abs")
    assert "cannot reach" not in sentence
