# ruff: noqa: E501  (the golden table is wider than a line of code)
"""The headline table as text: golden output, CI alignment, JSON-ready records."""

from __future__ import annotations

import json
import math

import pandas as pd

from gradprobe.analysis.report.headline import align_ci_column, format_headline, headline_records

TABLE = pd.DataFrame({
    "param": ["layers.0.weight", "layers.1.weight"], "layer": [0, 1],
    "plain": [6.31e-06, 0.00326], "plain_low": [3.4e-06, 0.00162],
    "plain_high": [1.09e-05, 0.00568], "plain_n": [50, 50],
    "residual": [0.0376, 1.1], "residual_low": [0.0231, 0.747],
    "residual_high": [0.0555, 1.47], "residual_n": [50, 50],
    "ratio": [5950.0, 111.0], "ratio_low": [3320.0, 34.7], "ratio_high": [10900.0, 265.0],
    "n_pairs": [50, 50], "p_adjusted": [1e-9, 0.2], "significant": [True, False],
})

GOLDEN = """\
grad_mean_abs per layer, depth 5, width 10
layer                           plain [95% CI]        residual [95% CI]        residual/plain [95% CI]             adjusted p
---------------  -----------------------------  -----------------------  -----------------------------  ---------------------
layers.0.weight  6.31e-06 [3.40e-06, 1.09e-05]  0.0376 [0.0231, 0.0555]  5.95e+03 [3.32e+03, 1.09e+04]                  <1e-4
layers.1.weight   0.00326 [ 0.00162,  0.00568]     1.1 [ 0.747,   1.47]       111 [    34.7,      265]  0.2 (not significant)"""


def test_format_headline_golden():
    assert format_headline(TABLE, "grad_mean_abs per layer, depth 5, width 10") == GOLDEN


def test_ci_columns_align_on_their_brackets():
    cells = align_ci_column(["1 [0.5, 2]", "0.00326 [0.00162, 0.00568]", "n/a"])
    assert len({len(c) for c in cells}) == 1
    assert len({c.index("[") for c in cells[:2]}) == 1
    assert len({c.index(",") for c in cells[:2]}) == 1
    assert cells[2].strip() == "n/a"


def test_records_are_strict_json_at_full_precision():
    table = TABLE.assign(ratio=[math.nan, 1 / 3])
    records = headline_records(table)
    text = json.dumps(records, allow_nan=False)
    assert records[0]["ratio"] is None and records[1]["ratio"] == 1 / 3
    assert records[1]["significant"] is False and isinstance(records[0]["plain_n"], int)
    assert json.loads(text) == records
