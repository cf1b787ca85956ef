"""Structurally zero gradients: parameters whose gradient is zero in exact arithmetic.

A bias feeding straight into a BatchNorm (``activation = "identity"``, ``norm =
"batchnorm"``) is removed by the normalisation: its gradient is exactly zero in exact
arithmetic, and what float arithmetic returns is rounding noise (about 1e-8 in float32,
1e-17 in float64). A ratio of two such noises says nothing about gradient flow: float32
against float64 gave a "regression" of 1.6e-9.

*Rule.* A bias (a parameter whose ``kind`` ends in ``bias``) of a cell is structurally zero
when in every seed with a record

    grad_max_abs <= STRUCTURAL_ZERO_FACTOR * eps(dtype) * batch_size * grad_act_rms

where ``eps`` is the machine epsilon of the cell's dtype and ``grad_act_rms`` the RMS of
dL/dh of the parameter's layer. The right-hand side bounds the rounding error of summing
``batch_size`` per-example contributions of the size of the loss gradient at that layer
(Higham 2002, sec. 4.2: |error| <= (n-1) eps sum |x_i|); the factor leaves room for
the chain of operations before the sum. Measured on a depth-3 identity/BatchNorm net
(8 seeds, batch 16): structurally zero biases at <= 8.8 eps (float32) and <= 22 eps
(float64) of ``batch_size * grad_act_rms``; every other parameter at >= 0.05, i.e. at
least 4e5 eps in float32. 1024 sits between with a margin of over 40 on each side. Vanishing
gradients of deep plain networks are not caught: a bias's gradient and ``grad_act_rms``
shrink together, so their ratio keeps its size.

Only biases: a bias's gradient is exactly that sum of ``dL/dh`` over the batch. A weight's
gradient sums ``dL/dh`` times the layer's *input*, whose size the bound does not know: in a
deep plain ReLU network the inputs of the later layers shrink to 1e-20 and below, and the
rule applied to weights flagged 165 vanishing (not zero) weight gradients of the default
sweep as structurally zero, taking them out of the gate.

Rows without ``grad_act_rms`` or ``grad_max_abs`` (NaN), or of an unknown dtype, are never
structurally zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradprobe.analysis.stats.series import Series

STRUCTURAL = "structurally zero"  # the label in records views, compare and the report
STRUCTURAL_ZERO_FACTOR = 1024
# Unit roundoff x 2 (the spacing of floats at 1) per record dtype name.
EPSILON = {"float64": 2.0**-52, "float32": 2.0**-23, "bfloat16": 2.0**-7, "float16": 2.0**-10}
# The metrics a structurally zero gradient leaves without meaning.
ZERO_GRADIENT_METRICS = ("grad_mean_abs", "grad_l2", "grad_max_abs")
STRUCTURALLY_ZERO = STRUCTURAL


def structurally_zero(series: Series) -> np.ndarray:
    """``(len(series.keys),)`` bool: the rule of the module docstring, for every
    (cell, parameter) of ``series`` (which needs ``grad_max_abs`` and ``grad_act_rms``)."""
    keys = series.keys
    if not {"grad_max_abs", "grad_act_rms"} <= set(series.values) or "dtype" not in keys:
        return np.zeros(len(keys), dtype=bool)
    biases = (keys["kind"].astype(str).str.endswith("bias").to_numpy() if "kind" in keys
              else np.zeros(len(keys), dtype=bool))
    eps = keys["dtype"].map(EPSILON).to_numpy(dtype=np.float64)
    batch = (keys["batch_size"].to_numpy(dtype=np.float64) if "batch_size" in keys
             else np.ones(len(keys)))
    bound = (STRUCTURAL_ZERO_FACTOR * eps * batch)[:, None] * series.values["grad_act_rms"]
    grad = series.values["grad_max_abs"]
    with np.errstate(invalid="ignore"):
        small = grad <= bound  # False wherever either side is NaN
    return biases & (small | ~series.present).all(axis=1) & series.present.any(axis=1)


def structural_rows(keys: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Test rows (columns of :attr:`gradprobe.analysis.compare.comparison.Comparison.tests` that
    apply) for
    matched (cell, parameter) ``keys`` structurally zero on both sides: one per gradient
    metric, verdict :data:`STRUCTURALLY_ZERO`, outside every family and the gate."""
    chosen = [m for m in metrics if m in ZERO_GRADIENT_METRICS]
    if keys.empty or not chosen:
        return pd.DataFrame()
    frame = pd.concat([keys.assign(metric=m) for m in chosen], ignore_index=True)
    reason = (f"structurally zero on both sides: |gradient| <= {STRUCTURAL_ZERO_FACTOR} eps "
              "x batch_size x grad_act_rms in every seed (zero in exact arithmetic)")
    return frame.assign(test="ratio", verdict=STRUCTURALLY_ZERO, gate=False, reason=reason)
