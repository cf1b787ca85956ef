"""``gradprobe calibrate CONFIG --coverage``: do the 95% intervals cover 95%?

A simulation of the intervals compare and the summaries use, next to the ones they replaced,
for each seed count and estimate (:data:`ESTIMATORS`): the mean of log values (a geometric
mean: Hall's skewness-corrected t, the summaries' interval; Student's t; BCa), the paired
ratio as the median of per-seed log ratios (the interpolated sign-test interval of
:func:`~gradprobe.analysis.stats.median_interval.median_ci`, what compare and the paired effects
use) and as their mean (t, BCa: what they used before), and the unpaired ratio (difference
of mean logs: Welch's t, what compare uses; BCa). Each interval is judged against the truth
of its own estimand. Two sources of data:

* *log-normal*: log10 values normal with known mean (0.8 and 1.2 decades of spread on the
  two sides of an unpaired ratio, so unequal variances are exercised; correlation 0.9
  between the sides of a paired one, whose log ratios are then normal: median = mean);
* *records*: per-seed log10 values of every (cell, parameter, metric) of two real sweeps on
  the same seeds, BASE (the config) and RUN (``init_gain`` x 1.05, a real paired change).
  Samples of ``n`` seeds are drawn with replacement from the ``pool`` seeds, so the truth
  is exactly the pool's mean or median (the empirical distribution is the population:
  Efron & Tibshirani 1993, ch. 6). Rows with a zero or non-finite value, or no spread, are
  left out.

Coverage is the share of intervals containing the truth, over repetitions and rows; its
Monte Carlo standard error ``se`` is the standard deviation of the per-repetition coverage
over sqrt(repetitions) (rows of one repetition share their seeds, so they are not counted
as independent).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradprobe.analysis.stats.estimators import (
    Interval,
    log10_or_nan,
    mean_ci,
    mean_difference_ci,
)
from gradprobe.analysis.stats.median_interval import median_ci

SEED_COUNTS = (6, 10, 16, 50)
TARGET = (0.94, 0.96)  # the acceptance band of issue 14
# Rows of a sampler's truths: one per estimand.
MEAN, PAIRED_MEDIAN, PAIRED_MEAN, UNPAIRED = range(4)


@dataclass(frozen=True)
class Estimator:
    """One interval under test: ``interval(base, paired_run, unpaired_run, options)`` of
    ``(rows x n)`` log10 matrices returns an :class:`Interval` of the estimand whose truth
    is row ``truth`` of the sampler's truths; ``used``: gradprobe reports this one."""

    estimate: str
    method: str
    truth: int
    used: bool
    interval: Callable[..., Interval]


ESTIMATORS = (
    Estimator("mean", "Hall t", MEAN, True, lambda b, p, u, o: mean_ci(b, method="hall", **o)),
    Estimator("mean", "t", MEAN, False, lambda b, p, u, o: mean_ci(b, method="t", **o)),
    Estimator("mean", "BCa", MEAN, False, lambda b, p, u, o: mean_ci(b, method="BCa", **o)),
    Estimator("paired ratio (median)", "sign test (HS)", PAIRED_MEDIAN, True,
              lambda b, p, u, o: median_ci(p - b)),
    Estimator("paired ratio (mean)", "t", PAIRED_MEAN, False,
              lambda b, p, u, o: mean_ci(p - b, method="t", **o)),
    Estimator("paired ratio (mean)", "BCa", PAIRED_MEAN, False,
              lambda b, p, u, o: mean_ci(p - b, method="BCa", **o)),
    Estimator("unpaired ratio", "Welch t", UNPAIRED, True,
              lambda b, p, u, o: mean_difference_ci(u, b, method="t", **o)),
    Estimator("unpaired ratio", "BCa", UNPAIRED, False,
              lambda b, p, u, o: mean_difference_ci(u, b, method="BCa", **o)),
)
METHODS = tuple(dict.fromkeys(e.method for e in ESTIMATORS))


@dataclass(frozen=True)
class CoverageSettings:
    repetitions: int = 200  # samples per (source, seed count)
    rows: int = 200  # log-normal rows per repetition
    seed_counts: tuple[int, ...] = SEED_COUNTS
    methods: tuple[str, ...] = METHODS  # of ESTIMATORS' methods, those to simulate
    n_resamples: int = 999  # BCa resamples
    seed: int = 0

    def __post_init__(self) -> None:
        from gradprobe.core.errors import UserError

        if self.repetitions < 2 or self.rows < 1:
            raise UserError(f"--repetitions {self.repetitions}: need at least 2")
        if min(self.seed_counts) < 2:
            raise UserError("coverage needs at least 2 seeds per sample")
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise UserError(f"coverage methods {sorted(unknown)}: use some of {METHODS}")

    def estimators(self) -> tuple[Estimator, ...]:
        return tuple(e for e in ESTIMATORS if e.method in self.methods)


Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def lognormal_sampler(rows: int) -> Sampler:
    """``(base, run, truth)``: log10 matrices ``(rows x n)`` and ``(rows x 2n)`` (RUN on
    BASE's seeds, then on ``n`` other seeds) and the known truths ``(4,)``: mean of
    ``base``, median and mean of ``run - base`` (normal: equal), mean of ``run`` minus
    that of ``base``."""
    def sample(rng: np.random.Generator, n: int):
        base = -4 + 0.8 * rng.standard_normal((rows, n))
        noise = rng.standard_normal((rows, n))
        paired = -3.9 + 1.2 * (0.9 * (base + 4) / 0.8 + np.sqrt(1 - 0.81) * noise)
        unpaired = -3.9 + 1.2 * rng.standard_normal((rows, n))  # other seeds: independent
        return (base, np.concatenate([paired, unpaired], axis=1),
                np.array([-4.0, 0.1, 0.1, 0.1]))
    return sample


def records_sampler(base: np.ndarray, run: np.ndarray) -> Sampler:
    """Resample seeds (columns, jointly for both sides) of real ``(rows x pool)`` log10
    matrices; truths ``(4, rows)``: pool mean of ``base``, pool median and mean of
    ``run - base``, difference of the pool means."""
    diff = run - base
    truth = np.vstack([base.mean(1), np.median(diff, axis=1), diff.mean(1),
                       run.mean(1) - base.mean(1)])

    def sample(rng: np.random.Generator, n: int):
        pick = rng.integers(0, base.shape[1], size=n)
        other = rng.integers(0, base.shape[1], size=n)  # the unpaired RUN's own seeds
        return base[:, pick], np.concatenate([run[:, pick], run[:, other]], axis=1), truth
    return sample


def one_repetition(base: np.ndarray, run: np.ndarray, truth: np.ndarray, n: int,
                   estimators: tuple[Estimator, ...], rng: np.random.Generator,
                   n_resamples: int) -> list[float]:
    """Coverage of each estimator in one sample; ``run`` ``(rows x 2n)`` holds RUN on
    BASE's seeds, then on ``n`` other seeds for the unpaired ratio."""
    truth = np.broadcast_to(np.asarray(truth, dtype=float).reshape(4, -1), (4, len(base)))
    options = {"rng": rng, "n_resamples": n_resamples}
    covered = []
    for estimator in estimators:
        interval = estimator.interval(base, run[:, :n], run[:, -n:], options)
        true = truth[estimator.truth]
        covered.append(float(((interval.low <= true) & (true <= interval.high)).mean()))
    return covered


def coverage_table(sources: dict[str, Sampler], settings: CoverageSettings) -> pd.DataFrame:
    """Columns: ``source``, ``estimate``, ``method``, ``used`` (gradprobe's interval for
    that estimate), ``seeds``, ``coverage``, ``se``, ``in_target`` (coverage within
    :data:`TARGET`)."""
    estimators = settings.estimators()
    rows = []
    for index, (source, sample) in enumerate(sources.items()):
        for n in settings.seed_counts:
            rng = np.random.default_rng([settings.seed, n, index])
            per_rep = np.array([one_repetition(*sample(rng, n), n, estimators, rng,
                                               settings.n_resamples)
                                for _ in range(settings.repetitions)])
            for k, estimator in enumerate(estimators):
                cov = per_rep[:, k]
                rows.append({"source": source, "estimate": estimator.estimate,
                             "method": estimator.method, "used": estimator.used, "seeds": n,
                             "coverage": cov.mean(),
                             "se": cov.std(ddof=1) / np.sqrt(len(cov))})
    table = pd.DataFrame(rows)
    table["in_target"] = table["coverage"].between(*TARGET)
    return table


def record_logs(base_values: dict[str, np.ndarray],
                run_values: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-metric ``(series x seeds)`` matrices of two sweeps on the same seeds into
    log10 matrices, keeping rows finite, non-zero and varying on both sides."""
    base = np.vstack([log10_or_nan(base_values[m])[0] for m in base_values])
    run = np.vstack([log10_or_nan(run_values[m])[0] for m in base_values])
    keep = (np.isfinite(base).all(1) & np.isfinite(run).all(1)
            & (np.ptp(base, axis=1) > 0) & (np.ptp(run - base, axis=1) > 0))
    return base[keep], run[keep]


def format_coverage(table: pd.DataFrame) -> str:
    """One line per (source, estimate, method): coverage at each seed count; ``*`` marks
    the interval gradprobe reports."""
    table = table.assign(method=table["method"] + np.where(table["used"], " *", ""))
    index = ["source", "estimate", "method"]
    wide = table.pivot_table(index=index, columns="seeds", values="coverage")
    wide = wide.reindex(pd.MultiIndex.from_frame(table[index].drop_duplicates()))
    wide.columns = [f"{n} seeds" for n in wide.columns]
    se = table["se"].max()
    return (f"coverage of nominal 95% intervals (target {TARGET[0]:.2f}-{TARGET[1]:.2f}; "
            f"Monte Carlo SE at most {se:.3f}):\n"
            + wide.to_string(float_format=lambda v: f"{v:.3f}")
            + "\n* the interval gradprobe reports for that estimate")


def records_sweeps(config, pool: int, root) -> Sampler:
    """Run ``config`` on ``pool`` seeds and again with ``init_gain`` x 1.05 on the same
    seeds (under ``root``); a :func:`records_sampler` of their :data:`COMPARE_METRICS`."""
    from dataclasses import replace
    from pathlib import Path

    from gradprobe.analysis.compare.sides import load_side
    from gradprobe.analysis.stats.series import build_series
    from gradprobe.bench.execute.runner import run_sweep
    from gradprobe.bench.plan.loader import config_with_overrides
    from gradprobe.bench.plan.sweep import COMPARE_METRICS

    base = config_with_overrides(config, seeds=pool)
    changed = replace(base, model=replace(base.model, init_gain=base.model.init_gain * 1.05))
    values = []
    for name, cfg in (("base", base), ("gain", changed)):
        out = Path(root) / name
        run_sweep(cfg, out=out, progress=False, force=True)
        records = load_side(out, "coverage run").in_memory().records
        series = build_series(records, list(COMPARE_METRICS))
        values.append(series.values)
    return records_sampler(*record_logs(*values))
