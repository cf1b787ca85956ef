"""Presence: BASE parameters without a counterpart in RUN are `missing` and fail the gate."""

from __future__ import annotations

from dataclasses import replace

from gradprobe.analysis.compare.comparison import CompareSettings, compare_sides
from gradprobe.analysis.compare.sides import load_side


def test_parameter_lost_from_a_matched_cell_is_missing(smoke_run):
    base = load_side(smoke_run, "BASE")
    records = base.in_memory().records
    cell = records["cell_id"].iloc[0]
    lost = (records["cell_id"] == cell) & (records["param"] == "layers.1.weight")
    result = compare_sides(base, replace(base, records=records[~lost]),
                           CompareSettings(n_resamples=199))
    missing = result.tests[result.tests["verdict"] == "missing"]
    assert missing[["cell_base", "param"]].values.tolist() == [[cell, "layers.1.weight"]]
    assert missing["gate"].all() and result.regressed
    assert "no counterpart" in missing["reason"].iloc[0]
    # The reverse (a parameter in RUN only) is listed by the pairing note, not judged.
    reverse = compare_sides(replace(base, records=records[~lost]), base,
                            CompareSettings(n_resamples=199))
    assert not reverse.regressed
