"""Same numbers everywhere? Cross-device agreement, and what each cell cost to measure.

In ``torch_compat`` mode a cell on CUDA starts from exactly the weights of the same cell on
the CPU, so any difference between their records is arithmetic: summation order, fused
kernels, TF32. :func:`device_agreement` measures it per metric.

Columns of :func:`device_agreement`: ``device_a``, ``device_b``, ``dtype``, ``metric``,
``n`` (matched record values), ``max_rel_diff``, ``median_rel_diff``, ``expected`` (the level
the median arithmetic difference stays under, :func:`expected_level`), ``within_expected``
(``median_rel_diff <= expected``).

Columns of :func:`cost_table`: ``device``, ``dtype``, ``variant`` (plain/residual),
``cells``, ``seeds``, ``compute_us_per_seed``, ``init_us_per_seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from gradprobe.analysis.stats.series import axis_columns
from gradprobe.bench.plan.devices import DTYPES
from gradprobe.bench.store.manifest import Manifest

AGREEMENT_METRICS = ("grad_mean_abs", "grad_l2", "grad_max_abs", "act_rms", "grad_act_rms")
# The level is on the *median* record. Rounding differs in the last bits per operation and
# compounds over layers: on an H200 against the CPU the median record differed by ~2 machine
# epsilons in float32 and float64 alike (blog MLP, depths 5-20, widths 10-64, 256 seeds),
# while TF32 matmuls (10-bit mantissa) move it to ~1e-4. Single records can differ far more
# than any fixed multiple of epsilon, because a sum's relative error grows with its condition
# number (Higham, Accuracy and Stability of Numerical Algorithms, 2002, sec. 4.2): with an
# MSE loss against 0 every gradient is proportional to the output, and an output that nearly
# cancels carried a 6e-3 difference into all records of its seed (width 64, plain). So the
# maximum is shown, and the verdict is the median's.
_EPSILONS = 100


def expected_level(dtype: str) -> float:
    return min(1.0, _EPSILONS * torch.finfo(DTYPES[dtype]).eps)


def device_agreement(records: pd.DataFrame) -> pd.DataFrame:
    """Relative differences between devices for matching (cell axes, seed, parameter)."""
    return agreement_table(relative_differences(records))


Differences = dict[tuple[str, str, str, str], np.ndarray]


def relative_differences(records: pd.DataFrame) -> Differences:
    """``{(device_a, device_b, dtype, metric): relative differences}`` of every matched
    finite value pair (cell axes other than device, seed, parameter) of ``records``. Several
    groups of cells give several such dicts: :func:`agreement_table` of their merge equals
    :func:`device_agreement` of all their records together."""
    if "device" not in records or records["device"].nunique() < 2:
        return {}
    keys = [c for c in axis_columns(records) if c != "device"] + ["seed", "param"]
    devices = sorted(records["device"].unique())
    out: Differences = {}
    for i, device_a in enumerate(devices):
        for device_b in devices[i + 1:]:
            a = records[records["device"] == device_a]
            b = records[records["device"] == device_b]
            merged = a.merge(b, on=keys, suffixes=("_a", "_b"))
            for (dtype,), part in merged.groupby(["dtype"]):
                for metric in AGREEMENT_METRICS:
                    out[(device_a, device_b, dtype, metric)] = _relative(part, metric)
    return out


def merge_differences(parts: list[Differences]) -> Differences:
    """One :data:`Differences` of several (arrays of one key concatenated)."""
    lists: dict[tuple, list[np.ndarray]] = {}
    for part in parts:
        for key, rel in part.items():
            lists.setdefault(key, []).append(rel)
    return {key: np.concatenate(arrays) for key, arrays in lists.items()}


def agreement_table(differences: Differences) -> pd.DataFrame:
    """The table of :func:`device_agreement` (columns in the module docstring), rows by
    device pair, dtype and metric."""
    order = sorted(differences, key=lambda k: (*k[:3], AGREEMENT_METRICS.index(k[3])))
    return pd.DataFrame([_agreement_row(differences[key], *key) for key in order])


def _relative(part: pd.DataFrame, metric: str) -> np.ndarray:
    va, vb = part[f"{metric}_a"].to_numpy(), part[f"{metric}_b"].to_numpy()
    scale = np.maximum(np.abs(va), np.abs(vb))
    finite = np.isfinite(va) & np.isfinite(vb) & (scale > 0)
    return np.abs(va - vb)[finite] / scale[finite]


def _agreement_row(rel: np.ndarray, device_a: str, device_b: str, dtype: str,
                   metric: str) -> dict:
    expected = expected_level(dtype)
    max_rel = float(rel.max()) if len(rel) else float("nan")
    median_rel = float(np.median(rel)) if len(rel) else float("nan")
    return {"device_a": device_a, "device_b": device_b, "dtype": dtype, "metric": metric,
            "n": len(rel), "max_rel_diff": max_rel, "median_rel_diff": median_rel,
            "expected": expected, "within_expected": bool(median_rel <= expected)}


def cost_table(manifest: Manifest) -> pd.DataFrame:
    """Time per seed to measure, per device, dtype and variant, from the manifest timings."""
    timings = manifest.timings
    rows = []
    for cell in manifest.cells:
        timing = timings.get(cell.cell_id)
        if not timing:
            continue
        axes = cell.axes
        rows.append({"device": axes["device"], "dtype": axes["dtype"],
                     "variant": "residual" if axes.get("residual") else "plain",
                     "seeds": timing["n_seeds"], "compute": timing["compute_seconds"],
                     "init": timing["init_seconds"]})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).groupby(["device", "dtype", "variant"], as_index=False).agg(
        cells=("seeds", "size"), seeds=("seeds", "sum"), compute=("compute", "sum"),
        init=("init", "sum"))
    frame["compute_us_per_seed"] = frame["compute"] / frame["seeds"] * 1e6
    frame["init_us_per_seed"] = frame["init"] / frame["seeds"] * 1e6
    return frame.drop(columns=["compute", "init"])
