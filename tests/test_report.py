"""The HTML report renders, is self-contained, and holds the numbers it claims."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gradprobe.analysis.report.headline import fmt_ci
from gradprobe.analysis.report.report_page import headline_for, write_report
from gradprobe.bench.store.records import read_records


def test_report_renders_with_headline_numbers(smoke_analysis):
    path = write_report(smoke_analysis.run_dir, analysis=smoke_analysis)
    # A no-break space keeps "[low, high]" together when a cell wraps (copied as a space).
    html = path.read_text(encoding="utf-8").replace("\u00a0", " ")
    headline = headline_for(smoke_analysis)
    assert headline.selection["depth"] == 3 and headline.selection["width"] == 8
    for row in headline.rows:
        for cell in row:
            assert cell.replace("<", "&lt;") in html
    for section in ("headline", "findings", "figures", "methods", "manifest"):
        assert f'id="{section}"' in html
    assert 'id="comparison"' not in html  # no compare.json in this run directory
    assert html.count("<svg") >= 4
    assert 'role="img" aria-label=' in html


def test_headline_matches_records_recomputed_by_hand(smoke_analysis):
    """The plain geometric mean in the table is 10 ** mean(log10) of the raw records."""
    headline = headline_for(smoke_analysis)
    records = read_records(smoke_analysis.run_dir)
    chosen = records[(records["depth"] == 3) & (records["width"] == 8) & ~records["residual"]
                     & (records["param"] == "layers.0.weight")]
    geo = 10 ** np.log10(chosen["grad_mean_abs"]).mean()
    row = headline.table[headline.table["param"] == "layers.0.weight"].iloc[0]
    assert np.isclose(row["plain"], geo, rtol=1e-12)
    assert row["plain_low"] <= geo <= row["plain_high"]
    assert fmt_ci(row["plain"], row["plain_low"], row["plain_high"]) in headline.text


def test_report_is_self_contained(smoke_analysis, tmp_path):
    html = write_report(smoke_analysis.run_dir, out=tmp_path / "r.html",
                        analysis=smoke_analysis).read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "<script src" not in html and "<link" not in html
    assert "@import" not in html


def test_findings_state_numbers_with_intervals(smoke_analysis):
    from gradprobe.analysis.report.findings import findings

    headline = headline_for(smoke_analysis)
    sentences = findings(smoke_analysis, headline.selection, headline.metric)
    assert len(sentences) >= 4
    interval = re.compile(r"\[[-0-9.e+]+, [-0-9.e+]+\]")
    estimates = [s for s in sentences if " times " in s or "multiplies" in s]
    assert len(estimates) >= 3
    assert all(interval.search(s) for s in estimates)
    assert all(re.search(r"\d", s) for s in sentences)
    assert any("without skip connections" in s and "headline configuration" in s
               for s in sentences)
    assert not any("p = <" in s for s in sentences)


def test_report_shows_comparison_with_baseline(smoke_analysis, smoke_variants, tmp_path):
    """With compare.json in the run directory the report gains the comparison section."""
    import shutil

    from gradprobe.analysis.compare.compare_output import write_outputs
    from gradprobe.analysis.compare.comparison import CompareSettings, compare_sides
    from gradprobe.analysis.compare.sides import load_side

    run = tmp_path / "run"
    shutil.copytree(smoke_analysis.run_dir, run)
    result = compare_sides(load_side(smoke_variants["gain"], "BASE"), load_side(run, "RUN"),
                           CompareSettings(n_resamples=199))
    write_outputs(result, run)
    html = write_report(run, out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="comparison"' in html and "Comparison with baseline: FAIL" in html
    assert "model.init_gain" in html and html.count("regressed</td>") >= 100


def test_training_section_appears_only_with_training(smoke_analysis, train_run):
    from gradprobe.analysis.analyze import load_analysis
    from gradprobe.analysis.report.training_section import reach_text

    plain = write_report(smoke_analysis.run_dir, analysis=smoke_analysis).read_text("utf-8")
    assert 'id="training"' not in plain and 'id="models"' not in plain
    html = write_report(train_run).read_text(encoding="utf-8")
    for table in ("training-setups", "training-reach", "training-final"):
        assert f'id="{table}"' in html
    assert 'id="figure-train-loss"' in html and 'id="figure-train-grads"' in html
    training = html[html.index('id="training"'):]
    assert training.count('<span class="cells">Cells shown: ') >= 2  # every figure says
    analysis = load_analysis(train_run)
    reach = analysis.train_reach
    assert set(reach["target_loss"]) == {0.5, 0.2}
    for _, row in reach.iterrows():
        assert reach_text(row).replace(">", "&gt;") in html
    final = analysis.train_final.iloc[0]
    assert fmt_ci(final["ratio"], final["ci_low"], final["ci_high"]) in html
    assert "not significant" in html or "<1e-4" in html


def test_models_section_names_the_factory_and_its_batching(tmp_path):
    from support import write_config

    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import load_config

    text = ('name = "conv"\n[model]\nfactory = "gradprobe.bench.models.conv_resnet:conv_resnet"\n'
            "width = 4\n[sweep]\nseeds = 4\ndepth = [2, 3]\nresidual = [false, true]\n")
    run_sweep(load_config(write_config(tmp_path, text)), out=tmp_path / "run", progress=False)
    html = write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert 'id="models"' in html
    assert "gradprobe.bench.models.conv_resnet:conv_resnet" in html and "vmap (4)" in html
    assert 'id="training"' not in html


# What torch raised under vmap for Hugging Face BERT, as a multi-line message.
BERT_VMAP_ERROR = ("RuntimeError: Tensor on device cpu is not on the expected device meta!\n"
                   "\nWhile executing %masked_fill : [num_users=1] = call_function[...]\n"
                   "Original traceback:\n  File \"modeling_bert.py\", line 1021, in forward")


@pytest.mark.parametrize("reason,line", [
    (BERT_VMAP_ERROR, "vmap failed: Tensor on device cpu is not on the expected device meta; "
                      "measured seed by seed"),
    ("RuntimeError: vmap: It looks like you're attempting to use a Tensor in some "
     "data-dependent control flow. We don't support that yet, please shout over at "
     "https://github.com/pytorch/functorch/issues/257 .",
     "vmap failed: It looks like you're attempting to use a Tensor in some data-dependent "
     "control flow; measured seed by seed"),
    ("VmapMismatch: vmap's loss for seed 0 (2.5) is not the module's own (2.75)",
     "vmap failed: vmap's loss for seed 0 (2.5) is not the module's own (2.75); measured "
     "seed by seed"),
])
def test_why_vmap_failed_is_one_human_line(reason, line):
    from gradprobe.analysis.report.report_page import REASON_CHARS, batching_reason

    assert batching_reason(reason) == line
    assert len(batching_reason("RuntimeError: " + "x " * 500)) < REASON_CHARS + 40


def test_the_batching_column_shows_one_line_and_keeps_the_whole_error(transformer_analysis,
                                                                      tmp_path):
    """Regression: BERT's "why / notes" cell showed torch's raw multi-line vmap error; it
    shows one line now, the whole text on hover and in the manifest."""
    import html as html_text
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(transformer_analysis.run_dir, run)
    document = json.loads((run / "manifest.json").read_text())
    document["batching"] = {cell["cell_id"]: {"mode": "loop", "reason": BERT_VMAP_ERROR,
                                              "notes": []} for cell in document["cells"]}
    (run / "manifest.json").write_text(json.dumps(document))
    page = write_report(run, out=tmp_path / "index.html").read_text(encoding="utf-8")
    table = page[page.index('id="factory-models"'):page.index("</table>",
                                                             page.index('id="factory-models"'))]
    (cell,) = re.findall(r"<td title=\"([^\"]*)\">([^<]*)</td>", table)
    assert html_text.unescape(cell[1]) == ("vmap failed: Tensor on device cpu is not on the "
                                           "expected device meta; measured seed by seed")
    assert html_text.unescape(cell[0]) == BERT_VMAP_ERROR


def test_training_without_plain_residual_pairs_still_reports_steps(tmp_path):
    from support import TRAIN_SMOKE, write_config

    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run
    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import load_config

    text = TRAIN_SMOKE.replace("residual = [false, true]", "").replace("seeds = 10",
                                                                        "seeds = 4")
    text = text.replace("[model]\n", "[model]\nresidual = true\n")
    run_sweep(load_config(write_config(tmp_path, text)), out=tmp_path / "run", progress=False)
    analysis = analyze_run(tmp_path / "run", settings=AnalysisSettings(n_resamples=199))
    assert analysis.train_tests.empty and len(analysis.train_reach) == 4
    html = write_report(tmp_path / "run", analysis=analysis).read_text(encoding="utf-8")
    assert 'id="training-reach"' in html and 'id="training-final"' not in html


def test_incomplete_run_is_analysed_with_a_warning_and_a_banner(smoke_run, tmp_path, capsys):
    """Bug: analyze and report took a killed run (status "running", cells missing) without a
    word, and the report header claimed every planned configuration."""
    import json
    import shutil

    from gradprobe.cli.main import main

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis", "index.html"))
    manifest_path = run / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    planned = len(manifest["cells"])
    kept = tmp_path / "kept.parquet"
    victim = sorted((run / "records").glob("cell-*.parquet"))[0]
    shutil.move(victim, kept)
    manifest_path.write_text(json.dumps({**manifest, "status": "interrupted"}))

    assert main(["analyze", str(run), "--resamples", "199"]) == 0
    err = capsys.readouterr().err
    assert f"incomplete run: {planned - 1} of {planned} cells have records" in err
    assert main(["report", str(run)]) == 0
    html = (run / "index.html").read_text(encoding="utf-8")
    assert "Incomplete run." in html and f"{planned - 1} configurations" in html
    assert "incomplete run" in capsys.readouterr().err

    # resumed and finished: the report notices the stale analysis and redoes it
    shutil.move(kept, victim)
    manifest_path.write_text(json.dumps(manifest))
    assert main(["report", str(run)]) == 0
    html = (run / "index.html").read_text(encoding="utf-8")
    assert "Incomplete run." not in html and f"{planned} configurations" in html
    assert "incomplete" not in capsys.readouterr().err


def test_report_after_force_with_another_config_redoes_the_analysis(smoke_run, tmp_path):
    """Bug: `run --force` of another config kept the old analysis/ folder, and `report`
    (which reuses an analysis) rendered the old config's numbers."""
    import json
    import shutil

    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis", "index.html"))
    analyze_run(run, settings=AnalysisSettings(n_resamples=199))
    manifest_path = run / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["config"]["sha256"] = "0" * 64  # what a forced run of another config leaves
    manifest_path.write_text(json.dumps(manifest))
    write_report(run)
    meta = json.loads((run / "analysis" / "analysis.json").read_text())
    assert meta["run"]["config_sha256"] == "0" * 64


def test_a_factory_report_describes_the_model_it_measured(transformer_analysis, tmp_path):
    """Regression: a transformer report described a bias-free nn.Linear MLP, labelled depth
    "Linear layers", fitted the ReLU-MLP spread theory and listed one row per parameter."""
    path = write_report(transformer_analysis.run_dir, analysis=transformer_analysis,
                        out=tmp_path / "index.html")
    html = path.read_text(encoding="utf-8")
    methods = html[html.index('id="methods"'):html.index('id="manifest"')]
    assert "gradprobe.bench.models.transformer:transformer" in methods
    assert "norm_position={&#39;pre&#39;, &#39;post&#39;}" in methods
    assert "depth={2, 3}" in methods and "width=16" in methods and "mse" in methods
    n_params = transformer_analysis.summary.query(
        "depth == 3 and norm_position == 'pre' and not residual and metric == 'grad_mean_abs'"
    )["numel"].sum()
    assert f"{n_params:,} parameters in 40 tensors" in methods
    assert "nn.Linear</code> layers" not in methods
    assert "Linear layers" not in html and "blog" not in html and 'id="theory"' not in html
    headline = headline_for(transformer_analysis)
    assert headline.by_role and len(headline.table) == 40
    assert len(headline.rows) == 12 + 4  # one block's roles and the parameters outside
    assert 'id="figure-headline"' in html


def test_table_of_contents_lists_every_section_shown(smoke_analysis, tmp_path):
    html = write_report(smoke_analysis.run_dir, analysis=smoke_analysis,
                        out=tmp_path / "index.html").read_text(encoding="utf-8")
    toc = html[html.index('<nav class="toc"'):html.index("</nav>")]
    shown = re.findall(r'<section id="([^"]+)"', html)
    assert re.findall(r'href="#([^"]+)"', toc) == shown
    assert 'href="#devices">Devices and cost' in toc


@pytest.mark.parametrize("microseconds,text", [(16200.0, "16.2 ms"), (850.0, "850 \u00b5s"),
                                               (1.5e6, "1.5 s"), (float("nan"), "n/a")])
def test_cost_is_printed_in_a_readable_unit(microseconds, text):
    from gradprobe.analysis.report.report_page import duration

    assert duration(microseconds) == text


def test_report_reanalyses_an_analysis_with_other_settings(smoke_run, tmp_path):
    """Item 10 of issue 14: staleness includes the settings, so a report asked for other
    settings than the stored analysis's is not drawn from that analysis."""
    import shutil

    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run, load_analysis
    from gradprobe.analysis.report.report_page import write_report

    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis", "index.html"))
    analyze_run(run, settings=AnalysisSettings(n_resamples=199))
    inode = (run / "analysis").stat().st_ino  # a re-analysis swaps in a new directory
    write_report(run, settings=AnalysisSettings(n_resamples=199))
    assert (run / "analysis").stat().st_ino == inode  # same settings: reused
    write_report(run, settings=AnalysisSettings(n_resamples=100))
    assert load_analysis(run).meta["settings"]["n_resamples"] == 100
