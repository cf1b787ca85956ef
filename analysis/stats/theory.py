"""What theory predicts for the depth trends, and where it applies.

Plain ReLU networks (He et al. 2015; Schoenholz et al. 2017). With zero-mean weights of
variance ``var`` and fan-in ``n``, a ReLU layer multiplies the per-unit second moment of
the forward signal by ``chi = n * var / 2``, and so does each layer for the backpropagated
signal. With an MSE loss against target 0, ``dL/dy = 2y`` is itself a forward quantity, so
every weight gradient of a depth-``L`` network has ``E[g^2] ~ chi^(2(L-1))``: one more layer
multiplies |g| by ``chi``, for the first layer and the output layer alike. ``chi`` is 1/6
for ``nn.Linear``'s default init (U(-1/sqrt(n), 1/sqrt(n)), var = 1/(3n)), 1 for Kaiming
(var = 2/n), 1/2 for Xavier and orthogonal weights (var = 1/n).

Finite width (Hanin 2018; Hanin & Nica 2019): a layer's factor is random, with relative
variance ``c/n`` for the squared norm, so log-gradients are close to normal and their mean
drifts below the log of the mean by ``c/(4n)`` per layer for each of the forward and the
backward pass. The predicted slope of the seed-mean of log10 |g| against depth is
``log10(chi) - c / (2 n ln 10)``, to first order in 1/n. For i.i.d. weights (Gaussian, or
uniform: the pre-activations are near-Gaussian) ``c = 5``: 2 from the chi-square spread of
``|W h|^2`` and 3 from which half of the units the ReLU keeps. An orthogonal matrix keeps
``|W h| = |h|`` exactly, so only the ReLU part remains: ``c = 3`` (a uniform direction on the
sphere keeps a share of ``|h|^2`` with relative variance 3/(n+2)).
``tests/test_theory.py`` checks that the measured slope's CI contains the prediction for
default, Kaiming and orthogonal init at widths 64 and 128 (600 seeds); at smaller widths the
prediction is shown but marked untested, and dead-ReLU seeds (exactly zero gradients, left
out of the log statistics) make the measurement describe surviving seeds only. The same
analysis says the spread of log-gradients across seeds grows linearly in depth/width; the
report fits that line.

Residual ReLU blocks ``h + relu(W h)`` are not covered: no prediction is shown for them.
The branch output is non-negative, so the textbook "second moment grows by 1 + chi per
block" is not the forward recursion; tracking the per-unit mean as well predicts the
forward RMS to within about 1%, but the backward factor 1 + chi underestimates the measured
first-layer gradient slope by about 20% (the ReLU masks correlate with the weights once
``h`` has a positive mean). docs/theory.md gives the derivation and the measured numbers.

:func:`predicted_slopes` adds to the trend table ``predicted_slope`` (NaN where the derivation
does not apply) and ``predicted_in_ci`` (whether the measured 95% CI contains it).
"""

from __future__ import annotations

import math

import pandas as pd

from gradprobe.bench.init.init_schemes import default_weight_bound

THEORY_METRICS = ("grad_mean_abs", "grad_l2")
# The prediction is first order in 1/width; it is tested from this width up.
TESTED_MIN_WIDTH = 64
# Floating-point types in which the tests hold; bfloat16/float16 rounding adds its own drift.
THEORY_DTYPES = ("float32", "float64")


def relu_fluctuation(init: str) -> float:
    """Relative variance of a ReLU layer's squared-norm factor, times the width: 5 for i.i.d.
    weights (Hanin 2018), 3 for orthogonal ones (norm-preserving: the ReLU mask only)."""
    return 3.0 if init == "orthogonal" else 5.0


def weight_variance(init: str, width: int, gain: float = 1.0) -> float:
    """Variance of one hidden-layer weight entry (fan-in = fan-out = ``width``)."""
    base = {
        "torch_default": default_weight_bound(width) ** 2 / 3,
        "kaiming_uniform": 2 / width,
        "kaiming_normal": 2 / width,
        "xavier_uniform": 1 / width,
        "xavier_normal": 1 / width,
        "orthogonal": 1 / width,  # rows of unit norm: n * var = 1, as Xavier
    }[init]
    return base * gain**2


def plain_slope(init: str, width: int, gain: float = 1.0) -> float:
    """Predicted log10 slope per layer of a plain ReLU net's weight gradients."""
    chi = width * weight_variance(init, width, gain) / 2
    return math.log10(chi) - relu_fluctuation(init) / (2 * width * math.log(10))


def applicable(row: pd.Series) -> bool:
    """Whether the verified plain-ReLU derivation covers a trend row: gradprobe's own MLP
    (no factory model) with plain bias-free ReLU layers, no norm, no ReZero, one input, MSE
    against 0, float32 or float64, a gradient metric."""
    return bool(row.get("activation") == "relu" and not row.get("residual", False)
                and not row.get("factory", "") and not row.get("rezero", False)
                and row.get("dtype", "float32") in THEORY_DTYPES
                and not row.get("bias", False) and row.get("norm", "none") == "none"
                and row.get("batch_size", 1) == 1 and row.get("target", 0.0) == 0.0
                and not row.get("output_activation", False) and row.get("loss", "mse") == "mse"
                and row.get("metric") in THEORY_METRICS)


def predicted_slope(row: pd.Series) -> float:
    """Predicted slope for one trend row (NaN where the derivation does not apply)."""
    if not applicable(row):
        return float("nan")
    return plain_slope(row.get("init", "torch_default"), int(row["width"]),
                       float(row.get("init_gain", 1.0)))


def predicted_slopes(trends: pd.DataFrame) -> pd.DataFrame:
    """The trend table with ``predicted_slope``, ``predicted_in_ci`` and
    ``theory_tested`` (the width is one the prediction was tested at)."""
    if trends.empty:
        return trends
    frame = trends.copy()
    frame["predicted_slope"] = [predicted_slope(row) for _, row in frame.iterrows()]
    inside = (frame["ci_low"] <= frame["predicted_slope"]) & \
        (frame["predicted_slope"] <= frame["ci_high"])
    frame["predicted_in_ci"] = inside.where(frame["predicted_slope"].notna())
    frame["theory_tested"] = frame["predicted_slope"].notna() & \
        (frame["width"] >= TESTED_MIN_WIDTH)
    return frame


def spread_fit(summary: pd.DataFrame, metric: str = "grad_mean_abs") -> pd.DataFrame:
    """Hanin's finite-width spread: ``Var(log10 g)`` of the first layer across seeds against
    depth/width, pooled over widths, per init and variant (``scipy.stats.linregress``).

    Columns: ``init``, ``residual``, ``points``, ``kappa`` (slope), ``kappa_se``,
    ``intercept``, ``r_squared``. Theory predicts a straight line whose slope does not
    depend on the width; a high ``r_squared`` across widths is the check."""
    from scipy import stats

    rows = summary[(summary["metric"] == metric) & (summary["layer"] == 0)
                   & (summary["kind"] == "weight") & summary["log10_sd"].notna()]
    if "residual" in rows:  # the result is for plain networks
        rows = rows[~rows["residual"].astype(bool)]
    needed = {"depth", "width", "init", "residual"}
    if rows.empty or not needed <= set(rows.columns) or rows["depth"].nunique() < 3:
        return pd.DataFrame()
    out = []
    for (init, residual), group in rows.groupby(["init", "residual"]):
        x = (group["depth"] / group["width"]).to_numpy(dtype=float)
        y = group["log10_sd"].to_numpy(dtype=float) ** 2
        if len(set(x)) < 3:
            continue
        fit = stats.linregress(x, y)
        out.append({"init": init, "residual": residual, "points": len(x),
                    "kappa": fit.slope, "kappa_se": fit.stderr, "intercept": fit.intercept,
                    "r_squared": fit.rvalue**2})
    return pd.DataFrame(out)
