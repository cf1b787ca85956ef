"""What a run's residual flag stands for (analysis/report/variants.py): a factory that takes
no ``residual`` is reported "as built", never as "plain (no skip connections)"."""

from __future__ import annotations

import json
import shutil

import matplotlib.pyplot as plt

from gradprobe.analysis.report import block_figures as blocks
from gradprobe.analysis.report.plot_style import (
    labelled_variants,
    overlapping_tick_labels,
    variant_handles,
)
from gradprobe.analysis.report.report_page import write_report
from gradprobe.analysis.report.variants import (
    AS_BUILT,
    residual_switch_applies,
    variant_labels,
)
from gradprobe.bench.store.manifest import read_manifest


def test_a_factory_without_residual_is_as_built(gpt2_analysis, transformer_analysis):
    gpt2 = read_manifest(gpt2_analysis.run_dir)
    assert "residual" not in gpt2.factories["gradprobe.bench.models.hf:gpt2"]["parameters"]
    assert variant_labels(gpt2) == {"plain": AS_BUILT}
    transformer = read_manifest(transformer_analysis.run_dir)  # its factory takes residual
    assert variant_labels(transformer) == {"plain": "plain", "residual": "residual"}


def test_a_manifest_from_before_recorded_parameters_keeps_the_old_words(gpt2_analysis,
                                                                        tmp_path):
    run = tmp_path / "run"
    shutil.copytree(gpt2_analysis.run_dir, run)
    document = json.loads((run / "manifest.json").read_text())
    for entry in document["factories"].values():
        del entry["parameters"]
    (run / "manifest.json").write_text(json.dumps(document))
    assert residual_switch_applies(read_manifest(run))


def test_legends_name_only_the_variants_labelled():
    with labelled_variants({"plain": AS_BUILT}):
        assert [h.get_label() for h in variant_handles()] == [AS_BUILT]
    assert [h.get_label() for h in variant_handles()] == ["plain", "residual"]


def test_one_variant_over_depths_is_profiled_per_depth(gpt2_analysis):
    """Bug: a GPT-2 report's per-block profile showed the deepest depth only, in panels so
    flat under their rotated role names that nothing could be read; one variant over
    several depths now draws one line per depth, three panels to a row."""
    data = blocks.block_profile_data(gpt2_analysis.summary, "grad_mean_abs")
    assert set(data["depth"]) == {2, 3, 4} and set(data["variant"]) == {"plain"}
    figure = blocks.block_profile(data, "grad_mean_abs")
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    heights = {round(ax.get_position().height, 3) for ax in figure.axes if ax.lines}
    assert legend == ["depth 2", "depth 3", "depth 4"]
    assert overlapping_tick_labels(figure) == []
    assert len(heights) == 1 and heights.pop() > 0.1  # every panel drawn at one usable size
    plt.close(figure)


def test_an_as_built_report_never_claims_no_skip_connections(gpt2_analysis, tmp_path):
    html = write_report(gpt2_analysis.run_dir, analysis=gpt2_analysis,
                        out=tmp_path / "index.html").read_text(encoding="utf-8")
    assert "no skip connections" not in html and "Without skips" not in html
    assert "as built [95% CI]" in html and '<th scope="col">parameter</th>' in html
    assert "the loss the model returns itself" in html
    assert "gradprobe.bench.models.hf:causal_tokens" in html  # the batch's origin, in Methods
    assert "residual/plain ratio with its" not in html
    assert "stream.The" not in html and "log10(residual)" not in html  # Methods, as built


def test_an_as_built_report_draws_no_line_in_plains_blue(gpt2_analysis, tmp_path):
    """History and site draw models as built in grey; the report's figures drew them in
    plain's blue, as if their skips had been switched off."""
    import re

    html = write_report(gpt2_analysis.run_dir, analysis=gpt2_analysis,
                        out=tmp_path / "index.html").read_text(encoding="utf-8")
    figures = "".join(re.findall(r"<svg.*?</svg>", html, flags=re.S)).lower()
    assert figures and "#0072b2" not in figures
    assert "#666666" in figures
