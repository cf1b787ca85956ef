"""``gradprobe compare BASE RUN``: did the gradient behaviour change, and by how much?

For every matched cell (:mod:`gradprobe.analysis.compare.matching`), parameter and metric, the
ratio of
geometric means RUN/BASE over seeds is estimated on log10 values with a 95% bootstrap CI
and tested, then judged by the two-gate rule of :mod:`gradprobe.analysis.compare.verdicts`.

*Pairing.* Records carry a fingerprint of each seed's initial parameters and input. When
every seed that both sides ran has the same fingerprint on both sides (and there are at least
:data:`MIN_PAIRED_SEEDS` of them), the cell is compared seed by seed: per-seed log ratios,
their mean with a BCa bootstrap CI, Wilcoxon's signed-rank test. Seeds only one side ran are
then left out. Otherwise (other seeds, or a PyTorch whose RNG stream changed, so that even
one common seed starts elsewhere) the cell falls back to an unpaired comparison of all seeds:
the difference of mean logs with a two-sample bootstrap CI and the Mann-Whitney U test, and
the output says so.

*Zeros and non-finite values* have no logarithm and are left out of the ratio. How many
seeds are exactly zero (dead ReLUs) is tested on its own, for every parameter whatever the
counts: exact McNemar on paired seeds, Fisher's exact test otherwise, for ``grad_mean_abs``
(zero for a seed exactly when the other gradient metrics are), ``act_rms`` and
``grad_act_rms``; when paired, any seed whose zero status changed is a verdict
(:func:`gradprobe.analysis.compare.verdicts.zero_verdicts`). Values that turn NaN or inf are always
``regressed`` (:func:`gradprobe.analysis.compare.verdicts.nonfinite_override`) and fail the gate.

*The gate and its family.* The gate judges one primary metric per parameter,
:data:`PRIMARY_METRIC` (``grad_mean_abs``): its ratio test and its zero-fraction test for
every matched (cell, parameter), a family fixed by the matched parameters alone, adjusted
together with Benjamini-Hochberg (``scipy.stats.false_discovery_control``); a test with no
p-value counts as p = 1, so the family size never depends on the data. The other metrics
are secondary: tested and judged the same way, each metric its own family (``grad_l2`` and
``grad_max_abs`` move with ``grad_mean_abs``, so adjusting them together as if independent
would only dilute it), shown in the output, but they fail the gate only by turning
non-finite. BASE cells and parameters without a counterpart in RUN are ``missing`` and fail
the gate (:mod:`gradprobe.analysis.compare.presence`). Parameters whose gradient is zero in exact
arithmetic
on both sides (:mod:`gradprobe.analysis.stats.structural`) get the label ``structurally zero`` for
their
gradient metrics instead of tests: outside every family and the gate.

Columns of :attr:`Comparison.tests`: ``cell_base``, ``cell_run``, the match-key axis columns,
``param``, ``layer``, ``kind``, ``metric``, ``test`` (``ratio`` or ``zero_fraction``),
``pairing`` (``paired``/``unpaired``), ``n_base``, ``n_run`` (seeds per side),
``n_used`` (seeds, or pairs, with a valid value on both sides), ``ratio``, ``ci_low``,
``ci_high``, ``log10_ratio``, ``base_zero``, ``run_zero``, ``zero_discordant`` (paired
seeds whose zero status differs; NaN unpaired), ``base_nonfinite``, ``run_nonfinite``,
``p_value``, ``p_adjusted``, ``family`` (``gate`` or the secondary metric's name), ``gate``
(whether the row can fail the gate), ``prefer``, ``verdict``, ``reason``. ``test`` is
``presence`` for the ``missing`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradprobe.analysis.compare.matching import (
    CellMatch,
    config_differences,
    environment_differences,
    match_cells,
)
from gradprobe.analysis.compare.pair_tests import SORT_COLUMNS, PairTests, one_pair, pair_tests
from gradprobe.analysis.compare.presence import missing_tests, unrecorded_cells
from gradprobe.analysis.compare.sides import Side
from gradprobe.analysis.compare.verdicts import (
    FAILING,
    PREFER_SIGN,
    VERDICTS,
    nonfinite_override,
    ratio_verdicts,
    zero_verdicts,
)
from gradprobe.analysis.stats.estimators import CONFIDENCE, adjust_pvalues, check_resamples
from gradprobe.analysis.stats.structural import structural_rows
from gradprobe.bench.plan.sweep import COMPARE_METRICS
from gradprobe.core.errors import UserError

DEFAULT_ALPHA = 0.05
# Measured with `gradprobe calibrate` (docs/regression.md, "Tolerance: from data"): the
# smallest calibration step at least floor^4, where the floor is the largest float32 rounding
# effect against float64 on the same seeds (ratio or CI bound): 1.00005 on the smoke sweep
# (suggests 1.001), 1.0015 on the default sweep outside its float32-underflow cells
# (suggests 1.01). One default for every preset takes the larger. A/A false-positive rate
# at 1.01: 0 of 20 on smoke, 0 of 2 on default.
DEFAULT_TOLERANCE = 1.01
DEFAULT_COMPARE_RESAMPLES = 1999
# The gate's metric: one per parameter, so that the gate's family is one ratio test and one
# zero-fraction test per matched parameter (module docstring, docs/regression.md).
PRIMARY_METRIC = "grad_mean_abs"
GATE_FAMILY = "gate"


@dataclass(frozen=True)
class CompareSettings:
    alpha: float = DEFAULT_ALPHA  # false discovery rate of the significance gate
    tolerance: float = DEFAULT_TOLERANCE  # ratios within [1/t, t] count as no change
    n_resamples: int = DEFAULT_COMPARE_RESAMPLES  # bootstrap resamples per interval
    confidence: float = CONFIDENCE
    seed: int = 0  # bootstrap generator seed
    prefer: tuple[tuple[str, str], ...] = ()  # (metric, "higher" | "lower"), from RUN's config
    metrics: tuple[str, ...] = COMPARE_METRICS

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise UserError(f"--alpha {self.alpha}: must be between 0 and 1")
        if not self.tolerance > 1:
            raise UserError(f"--tolerance {self.tolerance}: must be a ratio > 1, e.g. 1.01")
        check_resamples(self.n_resamples)

    def prefer_sign(self, metric: str) -> int:
        return PREFER_SIGN.get(dict(self.prefer).get(metric, ""), 0)


def settings_for(run: Side, *, alpha: float | None = None, tolerance: float | None = None,
                 n_resamples: int | None = None, seed: int = 0) -> CompareSettings:
    """Settings from command-line values, else RUN's ``[compare]`` section, else defaults.

    RUN's config decides the preferred directions: a change that is meant to move a metric
    declares so in the same commit as the change, where a reviewer sees both.
    """
    section = run.config.compare
    return CompareSettings(
        alpha=alpha if alpha is not None else section.alpha or DEFAULT_ALPHA,
        tolerance=tolerance if tolerance is not None else section.tolerance
        or DEFAULT_TOLERANCE,
        n_resamples=n_resamples or DEFAULT_COMPARE_RESAMPLES, seed=seed,
        prefer=section.prefer)


@dataclass(frozen=True)
class Comparison:
    """Everything ``gradprobe compare`` reports.

    ``pairing``: one row per matched cell: ``cell_base``, ``cell_run``, the key axes,
    ``paired``, ``n_base``, ``n_run``, ``n_common``, ``n_mismatched``, ``note``.
    ``tests``: one row per test (columns in the module docstring).
    """

    base: dict
    run: dict
    settings: CompareSettings
    config_differences: list[dict]
    environment_differences: list[dict]
    cells: CellMatch
    pairing: pd.DataFrame
    tests: pd.DataFrame

    def counts(self, gate_only: bool = False) -> dict[str, int]:
        """Tests per verdict: all of them, or (``gate_only``) those that can fail the gate."""
        tests = self.tests[self.tests["gate"]] if gate_only else self.tests
        found = tests["verdict"].value_counts()
        return {v: int(found.get(v, 0)) for v in VERDICTS}

    @property
    def regressed(self) -> bool:
        """Whether the gate fails: a gate test ``regressed`` or ``missing``."""
        counts = self.counts(gate_only=True)
        return any(counts[v] > 0 for v in FAILING)


def compare_sides(base: Side, run: Side, settings: CompareSettings) -> Comparison:
    """Match, test and judge (module docstring); UserError when no cell matches.

    Streamed: one matched cell pair in memory at a time (:mod:`gradprobe.analysis.compare.
    pair_tests`), only the columns the tests need; the families are adjusted afterwards,
    over every pair's rows, in the order one pivot of all records gave them."""
    cells = match_cells(base.cell_table(), run.cell_table())
    if cells.pairs.empty:
        raise UserError(f"{run.path} and {base.path} have no cell in common (matched on "
                        f"{', '.join(cells.key)}); compare runs of the same sweep")
    metrics = list(settings.metrics)
    parts, base_keys, run_keys = _pair_parts(base, run, cells, metrics, settings)
    pairing = pd.concat([p.pairing for p in parts], ignore_index=True)
    tests = judge(_in_order(pd.concat([p.tests for p in parts if len(p.tests)],
                                      ignore_index=True), SORT_COLUMNS), settings)
    missing = missing_tests(_keys_in_rank_order(base, base_keys, metrics), run_keys,
                            cells.pairs, cells.key,
                            unrecorded_cells(base.manifest, set(base.cell_table()["cell_id"])),
                            PRIMARY_METRIC)
    dead = structural_rows(_in_order(pd.concat([p.dead for p in parts], ignore_index=True),
                                     ["_rank", "_row"]), metrics)
    extra = [f for f in (missing, dead) if len(f)]
    if extra:
        tests = pd.concat([tests, *extra], ignore_index=True)
    return Comparison(base.describe(), run.describe(), settings,
                      config_differences(base, run), environment_differences(base, run),
                      cells, pairing, tests)


def _pair_parts(base: Side, run: Side, cells: CellMatch, metrics: list[str],
                settings: CompareSettings) -> tuple[list[PairTests], dict, pd.DataFrame]:
    """Every matched pair's :class:`PairTests`, one pair read at a time; also the keys of
    the BASE cells read (``{cell_id: keys}``) and of the RUN cells (one DataFrame)."""
    common = np.intersect1d(base.seeds, run.seeds)
    columns = (np.searchsorted(base.seeds, common), np.searchsorted(run.seeds, common))
    rngs = np.random.default_rng(settings.seed).spawn(len(metrics))
    ranks = {cell_id: rank for rank, cell_id in enumerate(run.ranked_cell_ids())}
    parts, base_keys, run_keys = [], {}, []
    for index, pair in enumerate(cells.pairs.itertuples(index=False)):
        bs = base.cell_series(pair.cell_base, metrics)
        rs = run.cell_series(pair.cell_run, metrics)
        parts.append(pair_tests(bs, rs, one_pair(cells, index), columns, metrics, rngs,
                                rank=ranks[pair.cell_run], n_resamples=settings.n_resamples,
                                confidence=settings.confidence))
        base_keys[pair.cell_base] = bs.keys
        run_keys.append(rs.keys)
        del bs, rs  # before the next pair is read: one pair in memory, not two
    return parts, base_keys, pd.concat(run_keys, ignore_index=True)


def _keys_in_rank_order(side: Side, known: dict[str, pd.DataFrame],
                        metrics: list[str]) -> pd.DataFrame:
    """Series keys of every cell of ``side`` in rank order, as :func:`build_series` of all
    its records orders them; cells not in ``known`` (unmatched) are read for their keys."""
    keys = [known[c] if c in known else side.cell_series(c, metrics[:1]).keys
            for c in side.ranked_cell_ids()]
    return pd.concat(keys, ignore_index=True)


def _in_order(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """``frame`` sorted (stably) by the sort columns ``by``, which are then dropped."""
    if frame.empty:
        return frame
    ordered = frame.sort_values(by, kind="stable").reset_index(drop=True)
    return ordered.drop(columns=[c for c in SORT_COLUMNS if c in ordered])


def judge(tests: pd.DataFrame, settings: CompareSettings) -> pd.DataFrame:
    """Adjust p-values per family (module docstring), then add ``family``, ``gate``,
    ``prefer``, ``verdict``, ``reason``."""
    tests = tests.copy()
    primary = (tests["metric"] == PRIMARY_METRIC).to_numpy()
    tests["family"] = np.where(primary, GATE_FAMILY, tests["metric"])
    tests["p_adjusted"] = family_adjusted(tests["p_value"], tests["family"])
    prefer = tests["metric"].map(settings.prefer_sign).to_numpy()
    tests["prefer"] = [dict(settings.prefer).get(m, "") for m in tests["metric"]]
    is_ratio = (tests["test"] == "ratio").to_numpy()
    verdict = np.empty(len(tests), dtype=object)
    verdict[is_ratio] = ratio_verdicts(
        tests["p_adjusted"][is_ratio], tests["ci_low"][is_ratio], tests["ci_high"][is_ratio],
        alpha=settings.alpha, tolerance=settings.tolerance, prefer=prefer[is_ratio])
    verdict[is_ratio] = nonfinite_override(verdict[is_ratio],
                                           tests["base_nonfinite"][is_ratio],
                                           tests["run_nonfinite"][is_ratio])
    direction = np.sign(tests["base_zero"] * tests["n_run"] - tests["run_zero"] * tests["n_base"])
    verdict[~is_ratio] = zero_verdicts(tests["p_adjusted"][~is_ratio], direction[~is_ratio],
                                       tests["zero_discordant"][~is_ratio],
                                       alpha=settings.alpha, prefer=prefer[~is_ratio])
    tests["verdict"] = verdict
    newly_nonfinite = (tests["base_nonfinite"] == 0) & (tests["run_nonfinite"] > 0)
    tests["gate"] = primary | newly_nonfinite.to_numpy()
    tests["reason"] = [explain(row, settings) for row in tests.itertuples(index=False)]
    return tests


def family_adjusted(pvalues: pd.Series, families: pd.Series) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values within each family. A test without a p-value
    (too few seeds) enters its family as p = 1 and keeps a NaN adjusted p-value, so a
    family's size is its number of tests, whatever the data."""
    p = pvalues.to_numpy(dtype=np.float64)
    out = np.full(len(p), np.nan)
    for family in pd.unique(families):
        members = (families == family).to_numpy()
        out[members] = adjust_pvalues(np.where(np.isnan(p[members]), 1.0, p[members]))
    return np.where(np.isnan(p), np.nan, out)


def explain(row, settings: CompareSettings) -> str:
    """One sentence saying why a test got its verdict."""
    p = f"adjusted p = {row.p_adjusted:.2g}" if np.isfinite(row.p_adjusted) else "no test"
    if row.test == "zero_fraction":
        counts = (f"exactly zero in {row.base_zero}/{row.n_base} BASE seeds vs "
                  f"{row.run_zero}/{row.n_run} RUN seeds")
        if np.isfinite(row.zero_discordant):
            return (f"{counts}; zero status changed in {row.zero_discordant:.0f} of the "
                    "paired seeds (same initial weights: no seed noise)")
        return f"{counts}, {p}" + ("" if row.p_adjusted < settings.alpha
                                   else ": not significant")
    if row.run_nonfinite and not row.base_nonfinite:
        return f"non-finite in {row.run_nonfinite} RUN seeds, none in BASE"
    if row.base_nonfinite and not row.run_nonfinite:
        return f"non-finite in {row.base_nonfinite} BASE seeds, none in RUN"
    if not np.isfinite(row.ci_low):
        return f"too few seeds with a finite non-zero value ({row.n_used}) for a test"
    band = f"[{1 / settings.tolerance:.4g}, {settings.tolerance:.4g}]"
    if row.verdict in ("regressed", "improved"):
        side = "above" if row.ci_low > 1 else "below"
        preferred = f"; {row.prefer} is preferred" if row.prefer else ""
        return f"{p} and the whole CI lies {side} the tolerance band {band}{preferred}"
    if row.verdict == "unchanged":
        return f"the whole CI lies inside the tolerance band {band}"
    if row.p_adjusted < settings.alpha:
        return f"significant ({p}) but the CI reaches into the tolerance band {band}"
    return f"not significant ({p}); the CI reaches beyond the tolerance band {band}"
