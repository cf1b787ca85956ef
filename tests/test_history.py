"""History: idempotent appends, versioned files, change points where the level steps."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from gradprobe.analysis.history.changepoints import detect_steps, penalty
from gradprobe.analysis.history.run_history import (
    append_run,
    history_rows,
    input_side_weights,
    read_history,
    trends,
    write_rows,
)
from gradprobe.core.errors import UserError


def test_steps_found_where_the_level_moves():
    y = np.log10([1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.2])
    (step,) = detect_steps(y, tolerance=1.01)
    assert step.index == 4 and step.ratio == pytest.approx(1.2)


def test_no_step_in_noise_or_last_bit_changes():
    rng = np.random.default_rng(0)
    assert detect_steps(rng.normal(0, 0.05, size=30), tolerance=1.01) == []
    # Bit-level differences (another CPU) are below the tolerance: no step however long.
    y = np.r_[np.zeros(10), np.full(10, 1e-7)]
    assert detect_steps(y, tolerance=1.01) == []
    # A single outlying run is not a step (segments need two runs).
    assert detect_steps(np.log10([1, 1, 1, 1, 2.0]), tolerance=1.01) == []


def test_penalty_has_a_floor_for_noise_free_series():
    assert penalty(np.zeros(10), 1.01) == pytest.approx(2 * np.log10(1.01))
    noisy = np.random.default_rng(1).laplace(0, 0.1, size=200)
    assert penalty(noisy, 1.01) > 2 * np.log10(1.01)


def synthetic_history(smoke_analysis, tmp_path, levels):
    """One history file per level: the smoke run's rows under another run id and date,
    with every geometric mean multiplied by the level."""
    base = history_rows(smoke_analysis.run_dir)
    for i, level in enumerate(levels):
        rows = base.copy()
        rows["run_id"] = f"run{i:02d}"
        rows["run_date"] = f"2026-01-{i + 1:02d}T00:00:00+00:00"
        rows["git_commit"] = f"{i:02d}" + "a" * 38
        for column in ("geo_mean", "ci_low", "ci_high"):
            rows[column] = rows[column] * level
        rows["log10_mean"] = rows["log10_mean"] + np.log10(level)
        write_rows(rows, root=tmp_path)
    return read_history(tmp_path)


def test_append_is_idempotent_and_versioned(smoke_analysis, tmp_path):
    path, n = append_run(smoke_analysis.run_dir, root=tmp_path)
    again, _ = append_run(smoke_analysis.run_dir, root=tmp_path)
    assert path == again and len(list(tmp_path.iterdir())) == 1
    history = read_history(tmp_path)
    assert len(history) == n == len(smoke_analysis.summary)
    assert history["torch_version"].iloc[0] and history["run_date"].iloc[0]
    assert set(history["metric"]) >= {"grad_mean_abs", "weight_l2"}


def test_trend_reports_the_planted_step(smoke_analysis, tmp_path):
    history = synthetic_history(smoke_analysis, tmp_path, [1, 1, 1, 1.5, 1.5, 1.5])
    items = trends(history, where={"depth": "3", "width": "8"}, tolerance=1.01)
    assert len(items) == 2  # plain and residual
    for trend in items:
        (step,) = trend.steps
        assert step.index == 3 and step.ratio == pytest.approx(1.5)
        assert trend.runs["git_commit"][step.index].startswith("03")


def page_json(html: str) -> dict:
    import json

    (text,) = re.findall(r'<script type="application/json" id="history-data">(.*?)</script>',
                         html, flags=re.S)
    return json.loads(text)


def test_history_page_offers_every_series_headline_first(smoke_analysis, tmp_path):
    """Bug: the page drew the first 24 of 100 series (not the headline cell) against the
    run index, told a static page's reader to use --where, and drew residual in plain's
    colour."""
    from gradprobe.analysis.history.history_page import write_history_page

    history = synthetic_history(smoke_analysis, tmp_path / "h", [1, 1, 2, 2])
    html = write_history_page(tmp_path / "h.html", history, tolerance=1.01).read_text(
        encoding="utf-8")
    data = page_json(html)
    keys = ["depth", "width", "residual", "param", "metric"]
    assert len(data["series"]) == len(smoke_analysis.summary.drop_duplicates(keys))
    first = data["series"][0]
    assert (first["cell"], first["param"], first["metric"]) == (
        "depth=3 width=8", "layers.0.weight", "grad_mean_abs")  # smoke.toml's headline
    assert {s["variant"] for s in data["series"]} == {"plain", "residual"}
    assert [r["commit"][:2] for r in data["runs"]] == ["00", "01", "02", "03"]
    assert "--where" not in html and "run (oldest first)" not in html
    # Every series stepped x2 at the third run: listed with the commits on each side.
    assert all(s["steps"] == [{"before": 1, "after": 2, "ratio": pytest.approx(2)}]
               for s in data["series"] if s["metric"] == "grad_mean_abs")
    assert "<code>01aaaaaaaa</code>" in html and "<code>02aaaaaaaa</code>" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


def test_history_is_in_commit_date_order(smoke_analysis, tmp_path):
    base = history_rows(smoke_analysis.run_dir)
    # "backfill" ran later, but measured an older commit (12:00+01:00 is 11:00 UTC).
    for name, started, committed in [("nightly", "2026-03-01T00:00:00+00:00",
                                      "2026-02-01T11:30:00Z"),
                                     ("backfill", "2026-03-02T00:00:00+00:00",
                                      "2026-02-01T12:00:00+01:00")]:
        write_rows(base.assign(run_id=name, run_date=started, commit_date=committed),
                   root=tmp_path)
    order = read_history(tmp_path).drop_duplicates("run_id")["run_id"]
    assert list(order) == ["backfill", "nightly"]


def test_history_files_of_version_1_are_migrated(smoke_analysis, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = history_rows(smoke_analysis.run_dir).drop(
        columns=["commit_date", "branch", "gradprobe_commit", "headline", "residual_switched"])
    table = pa.Table.from_pandas(rows, preserve_index=False)
    pq.write_table(table.replace_schema_metadata({b"gradprobe.history_version": b"1"}),
                   tmp_path / "run-old.parquet")
    history = read_history(tmp_path)
    assert history["commit_date"].isna().all() and not history["headline"].any()
    assert (history["gradprobe_commit"] == history["git_commit"]).all()
    assert history["residual_switched"].all()  # the words it was shown with


def test_a_model_as_built_is_never_called_plain_in_the_history(gpt2_analysis, tmp_path):
    """Bug: `gradprobe history --html` and the site's history page named and coloured the
    series of Hugging Face GPT-2 (a factory without ``residual``: skips built in) "plain";
    they use the report's words now (analysis/report/variants.py)."""
    from gradprobe.analysis.history.history_page import write_history_page

    append_run(gpt2_analysis.run_dir, root=tmp_path / "h")
    history = read_history(tmp_path / "h")
    assert not history["residual_switched"].any()
    html = write_history_page(tmp_path / "h.html", history, tolerance=1.01).read_text(
        encoding="utf-8")
    assert {s["variant"] for s in page_json(html)["series"]} == {"as built"}
    assert 'class="swatch as-built"' in html and "plain networks" not in html


def test_history_files_of_version_2_keep_the_words_they_were_shown_with(smoke_analysis,
                                                                        tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = history_rows(smoke_analysis.run_dir).drop(columns=["residual_switched"])
    table = pa.Table.from_pandas(rows, preserve_index=False)
    pq.write_table(table.replace_schema_metadata({b"gradprobe.history_version": b"2"}),
                   tmp_path / "run-old.parquet")
    history = read_history(tmp_path)
    assert history["residual_switched"].all()
    assert list(history.columns) == list(history_rows(smoke_analysis.run_dir).columns)


def test_history_rows_mark_the_headline(smoke_analysis):
    rows = history_rows(smoke_analysis.run_dir)
    marked = rows[rows["headline"]]
    assert set(marked["depth"]) == {3} and set(marked["width"]) == {8}
    assert set(marked["metric"]) == {"grad_mean_abs"} and set(marked["residual"]) == {
        False, True}


def test_history_command_says_what_it_shows(smoke_analysis, tmp_path, capsys):
    import json

    from gradprobe.cli.main import main

    synthetic_history(smoke_analysis, tmp_path / "h", [1, 1, 2, 2])
    assert main(["history", "--root", str(tmp_path / "h"), "--where", "depth=3"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("metric grad_mean_abs, parameter layers.0.weight: 4 series over "
                     "4 runs in commit order")
    assert main(["history", "--root", str(tmp_path / "h"), "--where", "depth=3",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shown"] == first and len(data["series"]) == 4
    (change,) = data["series"][0]["change_points"]
    assert change["commit_before"].startswith("01") and change["commit_after"].startswith(
        "02")


def test_bad_history_inputs(tmp_path, smoke_analysis):
    with pytest.raises(UserError, match="no history yet"):
        read_history(tmp_path)
    (tmp_path / "run-x.parquet").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"not a readable Parquet file .*add its run again"):
        read_history(tmp_path)
    history = synthetic_history(smoke_analysis, tmp_path / "ok", [1, 1])
    with pytest.raises(UserError, match="--where colour"):
        trends(history, where={"colour": "red"}, tolerance=1.01)


def test_default_series_is_each_configs_input_side_weight():
    history = pd.DataFrame({"config_name": ["mlp", "mlp", "tf", "tf", "tf"],
                            "param": ["layers.1.weight", "layers.0.weight", "blocks.0.norm1.bias",
                                      "blocks.0.norm1.weight", "head.weight"],
                            "kind": ["weight", "weight", "bias", "weight", "weight"],
                            "layer": [1, 0, 0, 0, 5]})
    assert input_side_weights(history) == ("layers.0.weight", "blocks.0.norm1.weight")


def test_two_runs_started_in_the_same_second_keep_their_own_history_rows(smoke_analysis,
                                                                         tmp_path):
    """Bug: the run id hashed config, seeds, start time (to the second) and gradprobe's
    commit only, so a second run of a config started in the same second (``make bench``
    at consecutive commits of a fast model) overwrote the first one's history file."""
    import shutil

    first, second = tmp_path / "scratch-20260101-000000", tmp_path / "scratch-20260101-000000-2"
    shutil.copytree(smoke_analysis.run_dir, first)
    shutil.copytree(smoke_analysis.run_dir, second)
    paths = {append_run(run, root=tmp_path / "history")[0] for run in (first, second)}
    assert len(paths) == 2
    assert read_history(tmp_path / "history")["run_id"].nunique() == 2
    assert append_run(first, root=tmp_path / "history")[0] in paths  # still idempotent


def test_a_stale_analysis_is_redone_before_it_enters_the_history(smoke_analysis, tmp_path):
    """Bug: `history add` took an analysis of an older version as it was, so one history
    mixed version 4's Student t intervals of means with version 5's Hall intervals."""
    import json
    import shutil

    from gradprobe.analysis.analyze import ANALYSIS_VERSION

    run = shutil.copytree(smoke_analysis.run_dir, tmp_path / "run")
    meta_path = run / "analysis" / "analysis.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "analysis_version": ANALYSIS_VERSION - 1}))
    summary_path = run / "analysis" / "summary.parquet"
    old = pd.read_parquet(summary_path)
    pd.DataFrame(old.assign(ci_low=-1.0)).to_parquet(summary_path)

    rows = history_rows(run)
    redone = json.loads(meta_path.read_text())
    assert redone["analysis_version"] == ANALYSIS_VERSION
    assert redone["settings"] == meta["settings"]  # its own settings (499 resamples)
    assert (rows["ci_low"] != -1.0).all()
    np.testing.assert_allclose(np.sort(rows["ci_low"].to_numpy()),
                               np.sort(smoke_analysis.summary["ci_low"].to_numpy()))
