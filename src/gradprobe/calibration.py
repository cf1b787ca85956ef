"""``gradprobe calibrate CONFIG``: the compare rule's noise band, false-positive rate and
power, measured on the config itself rather than guessed.

Three measurements, each with real sweeps of ``CONFIG``:

1. *Numerical floor.* The same seeds in float64: every difference from the float32 run is
   float32 rounding. Two float32 implementations (another CPU, BLAS or PyTorch build) differ
   by at most about twice that, so the floor is the largest deviation from 1 that the compare
   rule sees (CI bounds included) between the float32 and the float64 run.
2. *A/A.* ``repetitions`` pairs of disjoint seed sets of the config's size, drawn from one
   wide run: how far apart two runs of the same code land (the seed-noise band of the
   geometric-mean ratio, per metric), and how often the compare rule flags anything (its
   family-wise false-positive rate) at each candidate tolerance.
3. *Power.* Detection probability against the size of a true effect: (a) unpaired, the A/A
   pairs with RUN's gradient metrics (``GRADIENT_METRICS``) multiplied by a factor (the
   situation after an RNG change; the initial weights and forward activations stay as they
   are, since multiplying ``weight_l2``, which barely varies across seeds, would make any
   factor look detectable); (b)
   paired, the config rerun on the same seeds with ``init_gain`` multiplied by a factor (a
   realistic planted change whose effect on the gradients compounds over the layers).

The suggested tolerance is the smallest candidate at least ``safety`` (4) times the numerical
floor (on log scale) whose A/A false-positive rate is at most 1 in 20.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradprobe.analysis.compare.comparison import DEFAULT_ALPHA, CompareSettings, compare_sides
from gradprobe.analysis.compare.sides import Side, load_side
from gradprobe.analysis.compare.verdicts import (
    FAILING,
    REGRESSED,
    nonfinite_override,
    ratio_verdicts,
)
from gradprobe.bench.execute.runner import run_sweep
from gradprobe.bench.plan.loader import config_with_overrides
from gradprobe.bench.plan.sweep import COMPARE_METRICS, ExperimentConfig
from gradprobe.core.errors import UserError

# What a change of gradient behaviour moves; weight_l2 and act_rms are left as they are.
GRADIENT_METRICS = ("grad_mean_abs", "grad_l2", "grad_max_abs", "grad_act_rms")

CALIBRATION_VERSION = 1
MAX_FALSE_POSITIVE_RATE = 1 / 20  # the bar: 19 of 20 A/A comparisons pass
# float32 values below 1.2e-38 are subnormal. A cell whose smallest value is below 1e-25 has
# passed intermediates (deeper layers' dL/dh) through that range: on the default sweep a
# margin of 1e-30 still left depth-32 cells with 30% float32/float64 differences; from 1e-25
# to 1e-15 the floor is the same (1.0012 at 199 resamples; docs/regression.md).
SUBNORMAL_MARGIN = 1e-25


@dataclass(frozen=True)
class CalibrationSettings:
    repetitions: int = 20  # A/A pairs of disjoint seed sets
    seeds: int | None = None  # seeds per side; None: the config's own count
    tolerances: tuple[float, ...] = (1.001, 1.002, 1.005, 1.01, 1.02, 1.05, 1.1)
    effects: tuple[float, ...] = (1.05, 1.1, 1.2, 1.5, 2.0, 3.0)  # unpaired power
    gains: tuple[float, ...] = (1.002, 1.005, 1.01, 1.02, 1.05)  # paired power
    safety: float = 4.0  # tolerance >= floor ** safety: two machines, each at most the
    # floor away from exact, and a factor 2 of margin
    n_resamples: int = 999
    alpha: float = DEFAULT_ALPHA
    power_tolerance: float | None = None  # tolerance of the power runs; None: the suggested
    seed: int = 0

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise UserError(f"--repetitions {self.repetitions}: must be >= 1")
        if self.seeds is not None and self.seeds < 2:
            raise UserError(f"--seeds {self.seeds}: need at least 2 seeds per side")
        if any(t <= 1 for t in self.tolerances) or any(e <= 0 for e in self.effects):
            raise UserError("tolerances must be > 1 and effects > 0")


@dataclass(frozen=True)
class Calibration:
    """Results; every table is small and JSON-ready.

    ``floor``: ``max_log10``, ``ratio`` (10 ** max_log10). ``noise``: per metric, quantiles
    of the A/A ratio (``q50``, ``q95``, ``q99``, ``max`` of max(r, 1/r)) and the median CI
    width (``ci_high / ci_low``). ``false_positives``: per tolerance, ``gate_rate`` (share of
    A/A repetitions with any regression) and ``test_rate`` (share of tests flagged).
    ``power_unpaired``: per effect, ``test_rate`` and ``gate_rate``. ``power_paired``: per
    gain factor, ``test_rate`` (share of tests flagged) and ``gate`` (did it fail).
    """

    config: str
    n_seeds: int
    settings: CalibrationSettings
    floor: dict[str, float]
    noise: pd.DataFrame
    false_positives: pd.DataFrame
    power_unpaired: pd.DataFrame
    power_paired: pd.DataFrame
    suggested_tolerance: float
    seconds: float

    def to_json(self) -> dict[str, Any]:
        tables = {k: getattr(self, k).to_dict(orient="records")
                  for k in ("noise", "false_positives", "power_unpaired", "power_paired")}
        return {"calibration_version": CALIBRATION_VERSION, "config": self.config,
                "n_seeds": self.n_seeds, "settings": asdict(self.settings),
                "floor": self.floor, **tables,
                "suggested_tolerance": self.suggested_tolerance, "seconds": self.seconds}


def calibrate(config: ExperimentConfig, *, settings: CalibrationSettings = CalibrationSettings(),
              workdir: str | Path | None = None) -> Calibration:
    """Run the three measurements (module docstring) with sweeps under ``workdir``
    (a temporary directory when None)."""
    started = time.perf_counter()
    n = settings.seeds or len(config.sweep.seeds)
    with tempfile.TemporaryDirectory(prefix="gradprobe-calibrate-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        wide = _run(config_with_overrides(config, seeds=2 * settings.repetitions * n),
                    root / "aa")
        pairs = [(wide.with_seeds(range(2 * r * n, 2 * r * n + n)),
                  wide.with_seeds(range(2 * r * n + n, 2 * r * n + 2 * n)))
                 for r in range(settings.repetitions)]
        compare = CompareSettings(alpha=settings.alpha, n_resamples=settings.n_resamples,
                                  seed=settings.seed, tolerance=max(settings.tolerances))
        floor = numerical_floor(config, pairs[0][0], n, root, compare)
        aa = [compare_sides(a, b, compare).tests.assign(rep=i)
              for i, (a, b) in enumerate(pairs)]
        false_positives = false_positive_rates(aa, settings)
        tolerance = suggest_tolerance(false_positives, floor["max_log10"], settings)
        chosen = replace(compare, tolerance=settings.power_tolerance or tolerance)
        unpaired = unpaired_power(pairs, chosen, settings.effects)
        paired = paired_power(config, pairs[0][0], n, root, chosen, settings.gains)
    return Calibration(config.name, n, settings, floor, noise_band(aa), false_positives,
                       unpaired, paired, tolerance, round(time.perf_counter() - started, 2))


def _run(config: ExperimentConfig, out: Path) -> Side:
    run_sweep(config, out=out, progress=False, force=True)
    return load_side(out, "calibration run").in_memory()


def numerical_floor(config: ExperimentConfig, base: Side, n: int, root: Path,
                    compare: CompareSettings) -> dict[str, float]:
    """Largest |log10| of any ratio or CI bound between float32 and float64 on ``base``'s
    seeds: the rounding effect the tolerance must absorb.

    Cells with any value below :data:`SUBNORMAL_MARGIN` are left out and reported apart:
    there float32 underflows (deep plain networks), float32 and float64 differ by tens of
    percent, and so may two machines with different flush-to-zero settings. That is a real
    precision limit of the measurement, not rounding noise a tolerance should hide.
    """
    config = config_with_overrides(config, seeds=n)
    wide = replace(config, sweep=replace(config.sweep, dtype=("float64",),
                                         seeds=tuple(int(s) for s in base.seeds)))
    exact = _run(wide, root / "float64")
    tests = compare_sides(base, exact, compare).tests
    tests = tests[tests["test"] == "ratio"]
    tiny = base.records[list(COMPARE_METRICS)].where(base.records[list(COMPARE_METRICS)] > 0)
    smallest = tiny.min(axis=1).groupby(base.records["cell_id"]).min()
    underflow = set(smallest[smallest < SUBNORMAL_MARGIN].index)
    inside = ~tests["cell_base"].isin(underflow)
    return {"max_log10": _largest_deviation(tests[inside]),
            "ratio": 10 ** _largest_deviation(tests[inside]),
            "underflow_cells": len(underflow),
            "underflow_ratio": 10 ** _largest_deviation(tests[~inside])}


def _largest_deviation(tests: pd.DataFrame) -> float:
    bounds = np.abs(np.log10(tests[["ratio", "ci_low", "ci_high"]].to_numpy(dtype=float)))
    return float(np.nanmax(bounds)) if np.isfinite(bounds).any() else 0.0


def noise_band(aa: list[pd.DataFrame]) -> pd.DataFrame:
    """Per metric: quantiles of the A/A ratio folded above 1, and the median CI width."""
    tests = pd.concat(aa, ignore_index=True)
    tests = tests[(tests["test"] == "ratio") & np.isfinite(tests["log10_ratio"])]
    rows = []
    for metric in COMPARE_METRICS:
        part = tests[tests["metric"] == metric]
        if part.empty:
            continue
        folded = 10 ** np.abs(part["log10_ratio"].to_numpy())
        width = (part["ci_high"] / part["ci_low"]).median()
        q50, q95, q99 = np.quantile(folded, [0.5, 0.95, 0.99])
        rows.append({"metric": metric, "q50": q50, "q95": q95, "q99": q99,
                     "max": folded.max(), "ci_width": width, "n_tests": len(part)})
    return pd.DataFrame(rows)


def false_positive_rates(aa: list[pd.DataFrame], settings: CalibrationSettings) -> pd.DataFrame:
    """For each candidate tolerance, re-judge the A/A tests (p-values and CIs do not depend
    on it) and count repetitions with any regression."""
    rows = []
    for tolerance in settings.tolerances:
        flagged = [_flagged(tests, tolerance, settings.alpha) for tests in aa]
        rows.append({"tolerance": tolerance,
                     "gate_rate": float(np.mean([f.any() for f in flagged])),
                     "test_rate": float(np.mean(np.concatenate(flagged)))})
    return pd.DataFrame(rows)


def _flagged(tests: pd.DataFrame, tolerance: float, alpha: float) -> np.ndarray:
    """Gate tests (the gate's family, and values turning non-finite) that would fail the
    gate at ``tolerance``; secondary metrics do not fail it
    (:mod:`gradprobe.analysis.compare.comparison`)."""
    tests = tests[tests["gate"].astype(bool)]
    ratio = tests[(tests["test"] == "ratio") & tests["family"].notna()]
    verdict = ratio_verdicts(ratio["p_adjusted"], ratio["ci_low"], ratio["ci_high"],
                             alpha=alpha, tolerance=tolerance, prefer=np.zeros(len(ratio)))
    verdict = nonfinite_override(verdict, ratio["base_nonfinite"], ratio["run_nonfinite"])
    others = tests[(tests["test"] != "ratio") | tests["family"].isna()]["verdict"].to_numpy()
    return np.concatenate([verdict == REGRESSED, np.isin(others, FAILING)])


def suggest_tolerance(false_positives: pd.DataFrame, floor_log10: float,
                      settings: CalibrationSettings) -> float:
    """Smallest candidate above ``safety`` x the floor with an acceptable A/A rate."""
    ok = false_positives[(np.log10(false_positives["tolerance"]) >= settings.safety * floor_log10)
                         & (false_positives["gate_rate"] <= MAX_FALSE_POSITIVE_RATE)]
    if ok.empty:
        return float(false_positives["tolerance"].max())
    return float(ok["tolerance"].min())


def unpaired_power(pairs: list[tuple[Side, Side]], compare: CompareSettings,
                   effects: tuple[float, ...]) -> pd.DataFrame:
    """Detection probability of a true ratio ``effect`` on every gradient metric, unpaired
    seeds. Columns: ``effect``, ``test_rate`` (share of the gradient tests flagged),
    ``gate_rate`` (share of repetitions whose gate failed)."""
    rows = []
    for effect in effects:
        rates, gates = [], []
        for a, b in pairs:
            records = b.records.copy()
            records[list(GRADIENT_METRICS)] *= effect
            result = compare_sides(a, replace(b, records=records), compare)
            tests = result.tests
            ratio = tests[(tests["test"] == "ratio") & tests["metric"].isin(GRADIENT_METRICS)]
            rates.append(float((ratio["verdict"] == REGRESSED).mean()))
            gates.append(result.regressed)
        rows.append({"effect": effect, "test_rate": float(np.mean(rates)),
                     "gate_rate": float(np.mean(gates))})
    return pd.DataFrame(rows)


def paired_power(config: ExperimentConfig, base: Side, n: int, root: Path,
                 compare: CompareSettings, gains: tuple[float, ...]) -> pd.DataFrame:
    """Share of tests flagged when ``init_gain`` is multiplied by each factor, same seeds.
    Empty when ``init_gain`` is a sweep axis of the config."""
    if "init_gain" in dict(config.sweep.axes):
        return pd.DataFrame(columns=["gain", "test_rate", "gate"])
    rows = []
    for gain in gains:
        model = replace(config.model, init_gain=config.model.init_gain * gain)
        changed = replace(config_with_overrides(config, seeds=n), model=model)
        run = _run(changed, root / f"gain-{gain}")
        result = compare_sides(base, run, compare)
        ratio = result.tests[result.tests["test"] == "ratio"]
        rows.append({"gain": gain, "test_rate": float((ratio["verdict"] == REGRESSED).mean()),
                     "gate": result.regressed})
    return pd.DataFrame(rows)


def format_calibration(c: Calibration) -> str:
    """Plain-text tables of every measurement."""
    s = c.settings
    power = s.power_tolerance or c.suggested_tolerance
    lines = [f"calibration of {c.config}: {c.n_seeds} seeds per side, {s.repetitions} A/A "
             f"repetitions, alpha {s.alpha:g}, {s.n_resamples} resamples ({c.seconds:.0f} s)",
             "", f"numerical floor (float32 vs float64, same seeds): largest deviation "
             f"{c.floor['ratio'] - 1:.2e} (ratio {c.floor['ratio']:.8f}); "
             f"{c.floor['underflow_cells']} cells with values below {SUBNORMAL_MARGIN:g} "
             f"(float32 underflow) left out, largest deviation there "
             f"{c.floor['underflow_ratio'] - 1:.2e}", "",
             "A/A noise band of RUN/BASE (folded max(r, 1/r)) and median CI width:",
             c.noise.to_string(index=False, float_format=lambda v: f"{v:.4g}"), "",
             "A/A false-positive rate of the compare rule by tolerance:",
             c.false_positives.to_string(index=False, float_format=lambda v: f"{v:.4g}"), "",
             f"unpaired power at tolerance {power:g} (effect on every gradient metric):",
             c.power_unpaired.to_string(index=False, float_format=lambda v: f"{v:.3g}"), "",
             f"paired power at tolerance {power:g} (init_gain x factor, "
             "same seeds):",
             c.power_paired.to_string(index=False, float_format=lambda v: f"{v:.4g}"), "",
             f"suggested tolerance: {c.suggested_tolerance:g} (smallest candidate >= floor^"
             f"{s.safety:g} with an A/A false-positive rate <= {MAX_FALSE_POSITIVE_RATE:.0%})"]
    return "\n".join(lines)
