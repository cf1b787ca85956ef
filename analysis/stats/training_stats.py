"""Training statistics: loss curves with CIs, steps to reach a loss, paired comparisons.

Input: the training tables of :mod:`gradprobe.bench.store.train_records`. A *run* is one (cell,
training
setup) pair; its losses form a ``(seeds x steps + 1)`` matrix. The seed is the unit of
replication throughout, as in :mod:`gradprobe.analysis.stats.summary`.

* :func:`loss_curves`: per run and step (the logged steps, thinned to at most
  :data:`CURVE_POINTS`), the geometric mean of the loss over seeds with its 95% CI
  (Hall's skewness-corrected t, :func:`gradprobe.analysis.stats.estimators.mean_ci` on
  log10 values, vectorised over all rows). Seeds whose
  loss is non-finite (diverged) or exactly 0 have no logarithm: ``n_nonfinite`` counts them,
  and the curve describes the other seeds.
* :func:`steps_to_reach`: per run and target loss X, the first step with loss <= X for each
  seed. A seed that never gets there within the run (diverged ones included) is *censored*
  at the last step: nothing is known about when, or whether, it would. Reported: the
  fraction that reached X with its Wilson interval (``scipy.stats.binomtest``), and the
  Kaplan-Meier median (``scipy.stats.ecdf`` on ``CensoredData``) with the interval where the
  95% log-log pointwise band of the survival curve crosses 1/2 (Brookmeyer and Crowley
  1982, the convention of R's ``survfit``). With every seed censored at the same last step,
  the KM median is the sample median counting censored seeds as +inf; ``inf`` means "not
  reached within the run" (an interval's upper end is often that: too few seeds got there).
* :func:`reach_tests`: plain vs residual of the same seeds, task and setup: per seed, which
  reached X first (unknown only if neither did: a tie, like reaching at the same step); a
  two-sided exact sign test (``scipy.stats.binomtest``) on the untied pairs, valid under
  censoring because the order is known whenever at least one of the pair reached X.
* :func:`final_loss_effects`: residual/plain ratio of the final loss, paired by seed as in
  :mod:`gradprobe.analysis.stats.effects` (median of the per-seed log ratios with the
  interpolated sign-test interval, Wilcoxon signed-rank test).

P-values are Benjamini-Hochberg adjusted within each table (each is its own family).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from gradprobe.analysis.stats.effects import ALPHA
from gradprobe.analysis.stats.estimators import (
    CONFIDENCE,
    DEFAULT_RESAMPLES,
    adjust_pvalues,
    floor_pvalues,
    log10_or_nan,
    mean_ci,
    wilcoxon_pvalues,
)
from gradprobe.analysis.stats.median_interval import median_ci
from gradprobe.bench.store.records import AXIS_COLUMNS
from gradprobe.bench.store.train_records import TRAIN_COLUMNS

CURVE_POINTS = 100  # most points per loss curve (bootstrap cost grows with them)
RUN_KEY = ["cell_id", "train_id"]
IDENTITY = [*AXIS_COLUMNS, *TRAIN_COLUMNS]


@dataclass(frozen=True)
class Runs:
    """Training runs as matrices.

    ``keys``: one row per run: ``cell_id``, ``train_id``, the axis and train columns.
    ``seeds``: ``(S,)`` every seed of the run's cells. ``losses[i]``: ``(S, steps_i + 1)``
    float64, NaN rows for seeds a run lacks. ``tasks``, ``inits``: ``(runs x S)`` object
    arrays of task and init fingerprints (None where missing).
    """

    keys: pd.DataFrame
    seeds: np.ndarray
    losses: list[np.ndarray]
    tasks: np.ndarray
    inits: np.ndarray


def build_runs(loss: pd.DataFrame) -> Runs:
    """Pivot the training loss table (:data:`gradprobe.bench.store.train_records.LOSS_SCHEMA`) into
    runs."""
    identity = [c for c in IDENTITY if c in loss.columns]
    keys = (loss.drop_duplicates(RUN_KEY)[[*RUN_KEY, *identity]]
            .sort_values(identity, kind="stable").reset_index(drop=True))
    seeds = np.sort(loss["seed"].unique())
    losses, tasks, inits = [], [], []
    grouped = loss.groupby(RUN_KEY, sort=False)
    for cell_id, train_id in zip(keys["cell_id"], keys["train_id"], strict=True):
        part = grouped.get_group((cell_id, train_id))
        wide = part.pivot(index="seed", columns="step", values="loss_value").reindex(seeds)
        losses.append(wide.to_numpy(dtype=np.float64))
        first = part.drop_duplicates("seed").set_index("seed").reindex(seeds)
        tasks.append(first["task_fingerprint"].to_numpy(dtype=object))
        inits.append(first["init_fingerprint"].to_numpy(dtype=object))
    return Runs(keys, seeds, losses, np.array(tasks, dtype=object).reshape(len(keys), -1),
                np.array(inits, dtype=object).reshape(len(keys), -1))


def curve_steps(n_steps: int, log_every: int, max_points: int = CURVE_POINTS) -> np.ndarray:
    """The logged steps ``0, k, 2k, ..., last`` of a run with ``n_steps`` updates, evenly
    thinned to at most ``max_points`` (first and last kept)."""
    steps = np.unique(np.append(np.arange(0, n_steps + 1, log_every), n_steps))
    if len(steps) > max_points:
        steps = steps[np.unique(np.linspace(0, len(steps) - 1, max_points).round().astype(int))]
    return steps


def loss_curves(runs: Runs, *, rng: np.random.Generator,
                n_resamples: int = DEFAULT_RESAMPLES) -> pd.DataFrame:
    """Geometric-mean loss per run and step with a 95% CI (see the module docstring).

    Columns: run keys, ``step``, ``n_seeds``, ``n_used``, ``n_nonfinite``, ``n_zero``,
    ``geo_mean``, ``ci_low``, ``ci_high``, ``median`` (over all seeds, diverged as inf)."""
    frames, rows, has = [], [], []
    for i, loss in enumerate(runs.losses):
        steps = curve_steps(loss.shape[1] - 1, int(runs.keys.loc[i, "log_every"]))
        frame = pd.DataFrame({"step": steps})
        for column in runs.keys.columns:
            frame[column] = runs.keys.loc[i, column]
        frames.append(frame)
        rows.append(loss[:, steps].T)  # (points x S)
        # A seed is in the run if it has any row; a NaN loss within it means it diverged.
        has.append(np.broadcast_to(~np.isnan(loss).all(axis=1), (len(steps), len(loss))))
    values, present = np.vstack(rows), np.vstack(has)
    logs, is_zero, is_nonfinite = log10_or_nan(values)
    interval = mean_ci(logs, rng=rng, n_resamples=n_resamples)
    curves = pd.concat(frames, ignore_index=True)[[*runs.keys.columns, "step"]]
    curves["n_seeds"] = present.sum(axis=1)
    curves["n_used"] = interval.n
    curves["n_nonfinite"] = (is_nonfinite & present).sum(axis=1)
    curves["n_zero"] = is_zero.sum(axis=1)
    curves["geo_mean"] = 10**interval.point
    curves["ci_low"], curves["ci_high"] = 10**interval.low, 10**interval.high
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN rows
        curves["median"] = np.nanmedian(np.where(present & ~np.isfinite(values), np.inf,
                                                 np.where(present, values, np.nan)), axis=1)
    return curves


def first_reach(loss: np.ndarray, threshold: float) -> np.ndarray:
    """Per seed, the first step with ``loss <= threshold``; inf if none (NaN never counts).

    Takes ``(S, steps + 1)``, returns ``(S,)`` float64."""
    with np.errstate(invalid="ignore"):
        reached = loss <= threshold
    return np.where(reached.any(axis=1), reached.argmax(axis=1), np.inf)


def km_median(times: np.ndarray, last_step: int, confidence: float = CONFIDENCE
              ) -> tuple[float, float, float]:
    """Kaplan-Meier median of ``times`` (inf = censored at ``last_step``) with its CI.

    Returns ``(median, low, high)``; inf where the survival curve (or its band) never falls
    to 1/2 within the run. Where the band is undefined (survival exactly 0 or 1) it is taken
    to be the curve itself."""
    finite = np.isfinite(times)
    data = stats.CensoredData(uncensored=times[finite],
                              right=np.full(int((~finite).sum()), float(last_step)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # band undefined at 0 or 1
        sf = stats.ecdf(data).sf
        band = sf.confidence_interval(confidence, method="log-log")
    t, s = sf.quantiles, sf.probabilities
    low = np.where(np.isnan(band.low.probabilities), s, band.low.probabilities)
    high = np.where(np.isnan(band.high.probabilities), s, band.high.probabilities)
    is_event = np.isin(t, times[finite])

    def crossing(curve: np.ndarray) -> float:
        hits = np.flatnonzero((curve <= 0.5) & is_event)
        return float(t[hits[0]]) if len(hits) else np.inf

    return crossing(s), crossing(low), crossing(high)


def steps_to_reach(runs: Runs, thresholds, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per run and threshold. Columns: run keys, ``target_loss``, ``n_seeds``, ``n_reached``,
    ``frac_reached``, ``frac_low``, ``frac_high``, ``median_steps``, ``median_low``,
    ``median_high`` (inf: not reached within the run), ``n_diverged`` (non-finite final
    loss), ``last_step``."""
    rows = []
    for i, loss in enumerate(runs.losses):
        loss = loss[~np.isnan(loss).all(axis=1)]  # seeds this run has
        last = loss.shape[1] - 1
        for threshold in thresholds:
            times = first_reach(loss, threshold)
            reached = int(np.isfinite(times).sum())
            ci = stats.binomtest(reached, len(times)).proportion_ci(confidence, "wilson")
            median, low, high = km_median(times, last, confidence)
            rows.append({**runs.keys.iloc[i].to_dict(), "target_loss": threshold,
                         "n_seeds": len(times), "n_reached": reached,
                         "frac_reached": reached / len(times), "frac_low": ci.low,
                         "frac_high": ci.high, "median_steps": median, "median_low": low,
                         "median_high": high,
                         "n_diverged": int((~np.isfinite(loss[:, -1])).sum()),
                         "last_step": last})
    return pd.DataFrame(rows)


def match_runs(keys: pd.DataFrame, axis: str = "residual") -> pd.DataFrame:
    """Runs differing only in ``axis`` (False vs True): ``i_control``, ``i_treatment``,
    ``cell_control``, ``cell_treatment``, ``train_id`` and the shared columns."""
    if axis not in keys.columns:
        return pd.DataFrame()
    shared = [c for c in keys.columns if c not in ("cell_id", axis)]
    indexed = keys.reset_index(names="row")
    left = indexed[~indexed[axis].astype(bool)][[*shared, "row", "cell_id"]]
    right = indexed[indexed[axis].astype(bool)][[*shared, "row", "cell_id"]]
    pairs = left.merge(right, on=shared, suffixes=("_control", "_treatment"))
    return pairs.rename(columns={"row_control": "i_control", "row_treatment": "i_treatment",
                                 "cell_id_control": "cell_control",
                                 "cell_id_treatment": "cell_treatment"})


def _pair_checks(runs: Runs, ic: int, it: int) -> dict:
    both = pd.notna(runs.tasks[ic]) & pd.notna(runs.tasks[it])
    return {"same_task": bool((runs.tasks[ic] == runs.tasks[it])[both].all()),
            "same_initial_weights": bool((runs.inits[ic] == runs.inits[it])[both].all())}


def reach_tests(runs: Runs, thresholds, alpha: float = ALPHA) -> pd.DataFrame:
    """Sign tests of who reaches each target loss first, residual vs plain, per seed.

    Columns: shared keys, ``cell_control``, ``cell_treatment``, ``target_loss``,
    ``n_pairs``, ``n_residual_first``, ``n_plain_first``, ``n_ties``, ``p_value``,
    ``p_adjusted``, ``significant``, ``same_task``, ``same_initial_weights``."""
    pairs = match_runs(runs.keys)
    rows = []
    for pair in pairs.itertuples(index=False):
        plain, residual = runs.losses[pair.i_control], runs.losses[pair.i_treatment]
        both = ~np.isnan(plain).all(axis=1) & ~np.isnan(residual).all(axis=1)
        base = {k: v for k, v in pair._asdict().items() if k not in ("i_control",
                                                                      "i_treatment")}
        for threshold in thresholds:
            tp = first_reach(plain[both], threshold)
            tr = first_reach(residual[both], threshold)
            res_first, plain_first = int((tr < tp).sum()), int((tp < tr).sum())
            untied = res_first + plain_first
            p = float(floor_pvalues(stats.binomtest(res_first, untied).pvalue)) if untied \
                else 1.0  # an exact p below float64's range is stored as a bound, never 0
            rows.append({**base, "target_loss": threshold, "n_pairs": int(both.sum()),
                         "n_residual_first": res_first, "n_plain_first": plain_first,
                         "n_ties": int(both.sum()) - untied, "p_value": p,
                         **_pair_checks(runs, pair.i_control, pair.i_treatment)})
    return _adjusted(pd.DataFrame(rows), alpha)


def final_loss_effects(runs: Runs, *, alpha: float = ALPHA) -> pd.DataFrame:
    """Residual/plain ratio of the final loss, paired by seed (see the module docstring).

    Columns: shared keys, ``cell_control``, ``cell_treatment``, ``n_pairs``,
    ``n_excluded`` (a side non-finite or zero), ``ratio``, ``ci_low``, ``ci_high``,
    ``p_value``, ``p_adjusted``, ``significant``, ``same_task``, ``same_initial_weights``."""
    pairs = match_runs(runs.keys)
    if pairs.empty:
        return pd.DataFrame()
    diffs = np.vstack([log10_or_nan(runs.losses[t][:, -1])[0]
                       - log10_or_nan(runs.losses[c][:, -1])[0]
                       for c, t in zip(pairs["i_control"], pairs["i_treatment"], strict=True)])
    interval = median_ci(diffs)
    frame = pairs.drop(columns=["i_control", "i_treatment"])
    frame["n_pairs"] = interval.n
    frame["n_excluded"] = diffs.shape[1] - interval.n
    frame["ratio"] = 10**interval.point
    frame["ci_low"], frame["ci_high"] = 10**interval.low, 10**interval.high
    frame["p_value"] = wilcoxon_pvalues(diffs)
    checks = [_pair_checks(runs, c, t) for c, t in zip(pairs["i_control"],
                                                        pairs["i_treatment"], strict=True)]
    frame = pd.concat([frame, pd.DataFrame(checks)], axis=1)
    return _adjusted(frame, alpha)


def _adjusted(frame: pd.DataFrame, alpha: float) -> pd.DataFrame:
    if frame.empty:
        return frame
    frame["p_adjusted"] = adjust_pvalues(frame["p_value"].to_numpy())
    frame["significant"] = frame["p_adjusted"] < alpha
    return frame


def gradient_curves(grads: pd.DataFrame, *, rng: np.random.Generator,
                    n_resamples: int = DEFAULT_RESAMPLES, metric: str = "grad_mean_abs"
                    ) -> pd.DataFrame:
    """Geometric mean over seeds of ``metric`` of the first layer's and the output layer's
    weight (``role`` ``first``/``output``) at each curve step, with a 95% CI.

    Takes the training grads table; columns: run keys, ``role``, ``step``, ``metric``,
    ``n_seeds``, ``n_used``, ``geo_mean``, ``ci_low``, ``ci_high``."""
    identity = [c for c in IDENTITY if c in grads.columns]
    n_layers = grads.groupby("cell_id")["layer"].transform("max") + 1
    weight = grads["kind"] == "weight"
    first, output = weight & (grads["layer"] == 0), weight & (grads["layer"] == n_layers - 1)
    rows = grads[first | output].assign(role=np.where(first, "first", "output")[first | output])
    keep = np.zeros(len(rows), dtype=bool)
    for (_, steps, every), index in rows.groupby(["train_id", "steps", "log_every"]).groups.items():
        keep[rows.index.get_indexer(index)] = rows.loc[index, "step"].isin(
            curve_steps(int(steps), int(every))).to_numpy()
    rows = rows[keep]
    index = [*RUN_KEY, *identity, "role", "step"]
    wide = rows.set_index([*index, "seed"])[metric].unstack("seed")
    logs = log10_or_nan(wide.to_numpy(dtype=np.float64))[0]
    interval = mean_ci(logs, rng=rng, n_resamples=n_resamples)
    curves = wide.index.to_frame(index=False)
    curves["metric"] = metric
    curves["n_seeds"] = wide.notna().sum(axis=1).to_numpy()
    curves["n_used"] = interval.n
    curves["geo_mean"] = 10**interval.point
    curves["ci_low"], curves["ci_high"] = 10**interval.low, 10**interval.high
    return curves.sort_values([*identity, "role", "step"], kind="stable", ignore_index=True)


TABLES = ("train_curves", "train_grads", "train_reach", "train_tests", "train_final")


def analyze_training(loss: pd.DataFrame, grads: pd.DataFrame, thresholds, *,
                     rng: np.random.Generator, n_resamples: int = DEFAULT_RESAMPLES,
                     alpha: float = ALPHA) -> dict[str, pd.DataFrame]:
    """Every training table (:data:`TABLES`); empty frames for a run without training."""
    if loss.empty:
        return {name: pd.DataFrame() for name in TABLES}
    runs = build_runs(loss)
    rngs = rng.spawn(2)
    return {
        "train_curves": loss_curves(runs, rng=rngs[0], n_resamples=n_resamples),
        "train_grads": gradient_curves(grads, rng=rngs[1], n_resamples=n_resamples),
        "train_reach": steps_to_reach(runs, thresholds),
        "train_tests": reach_tests(runs, thresholds, alpha),
        "train_final": final_loss_effects(runs, alpha=alpha),
    }
