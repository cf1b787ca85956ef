"""Calibration: the numbers that set the default tolerance, on a small smoke setting."""

from __future__ import annotations

import json

import pytest

from gradprobe.bench.plan.loader import load_config
from gradprobe.calibration import CalibrationSettings, calibrate, format_calibration
from gradprobe.cli.main import main
from gradprobe.core.errors import UserError

SMALL = CalibrationSettings(repetitions=2, effects=(4.0,), gains=(1.05,), n_resamples=199)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return calibrate(load_config("smoke"), settings=SMALL,
                     workdir=tmp_path_factory.mktemp("calibrate"))


def test_floor_is_float_rounding_and_tolerance_clears_it(small):
    # float32 vs float64 on the smoke sweep: relative differences of order 1e-5, no underflow.
    assert 1 < small.floor["ratio"] < 1.001
    assert small.floor["underflow_cells"] == 0
    assert small.suggested_tolerance in SMALL.tolerances
    assert small.suggested_tolerance ** (1 / SMALL.safety) >= small.floor["ratio"]


def test_aa_rates_and_power_tables(small):
    fp = small.false_positives
    assert list(fp["tolerance"]) == list(SMALL.tolerances)
    assert fp["gate_rate"].between(0, 1).all() and (fp["test_rate"] <= 0.05).all()
    # Rates can only fall as the band widens.
    assert fp["test_rate"].is_monotonic_decreasing
    assert set(small.noise["metric"]) >= {"grad_mean_abs", "weight_l2"}
    assert (small.noise["q95"] >= 1).all()
    # A fourfold change of every gradient metric is found in every repetition, unpaired.
    assert small.power_unpaired["gate_rate"].iloc[0] == 1.0
    # init_gain x 1.05 on the same seeds is found (paired), as the issue demands.
    assert bool(small.power_paired["gate"].iloc[0])
    text = format_calibration(small)
    assert "suggested tolerance" in text and "numerical floor" in text
    assert json.dumps(small.to_json())  # JSON-ready


def test_calibrate_refuses_bad_settings():
    with pytest.raises(UserError, match="--repetitions 0"):
        CalibrationSettings(repetitions=0)
    with pytest.raises(UserError, match="--seeds 1"):
        CalibrationSettings(seeds=1)


def test_history_cli_add_show_and_errors(smoke_analysis, tmp_path, capsys):
    root = tmp_path / "history"
    assert main(["history", "add", str(smoke_analysis.run_dir), "--root", str(root)]) == 0
    assert main(["history", "--root", str(root), "--where", "depth=3",
                 "--html", str(tmp_path / "h.html")]) == 0
    out = capsys.readouterr().out
    assert "1 runs, no change point(s)" in out and (tmp_path / "h.html").is_file()
    assert main(["history", "--root", str(tmp_path / "none")]) == 2
    assert "no history yet" in capsys.readouterr().err


def test_false_positive_rates_count_only_what_fails_the_gate():
    """A/A rates follow the gate: a secondary metric's flagged ratio does not count, a
    gate test's does (the calibrate tables once counted every test)."""
    import numpy as np
    import pandas as pd

    from gradprobe.calibration import _flagged

    tests = pd.DataFrame({
        "test": ["ratio", "ratio", "zero_fraction"], "family": ["grad_l2", "gate", "gate"],
        "gate": [False, True, True], "p_adjusted": [0.001, 0.5, 1.0],
        "ci_low": [2.0, 0.9, np.nan], "ci_high": [3.0, 1.1, np.nan],
        "base_nonfinite": [0, 0, 0], "run_nonfinite": [0, 0, 0],
        "verdict": ["regressed", "inconclusive", "unchanged"]})
    assert not _flagged(tests, 1.01, 0.05).any()
    tests.loc[1, ["p_adjusted", "ci_low", "ci_high"]] = [0.001, 2.0, 3.0]
    assert _flagged(tests, 1.01, 0.05).sum() == 1
