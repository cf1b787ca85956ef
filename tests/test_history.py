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


def test_history_page_renders(smoke_analysis, tmp_path):
    from gradprobe.analysis.history.history_page import write_history_page

    history = synthetic_history(smoke_analysis, tmp_path / "h", [1, 1, 2, 2])
    items = trends(history, where={"depth": "3"}, tolerance=1.01)
    html = write_history_page(tmp_path / "h.html", items).read_text(encoding="utf-8")
    assert html.count("<svg") == 1 and "Change points" in html
    assert "02aaaaaaaa" in html  # the commit that starts the new level
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


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
