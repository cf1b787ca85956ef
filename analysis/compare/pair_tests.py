"""The tests of one matched cell pair: pairing, ratio and zero-fraction tests, dead rows.

:func:`pair_tests` takes the two cells' :class:`~gradprobe.analysis.stats.series.Series`
(each on its side's seeds) and returns the rows this pair contributes to
:attr:`gradprobe.analysis.compare.comparison.Comparison.tests`, unadjusted, each with its
sort key (``_metric``, ``_pairing``, ``_test``, ``_rank``, ``_row``), so that the
comparison can put every pair's rows in the order a single pivot of all records gave them
and adjust each family over all of them at once (Benjamini-Hochberg needs the whole
family). The functions below it are written over any :class:`Series`: a pair's, or (as the
comparison computed it before it streamed, issue 14) every matched cell's at once.

Paired ratios are the median of per-seed log ratios with the interpolated sign-test interval
(:func:`~gradprobe.analysis.stats.median_interval.median_ci`), unpaired ones the difference of
mean logs with Welch's t interval. Randomness: neither interval draws anything from
``rng``; that is what lets each pair be computed on its own and still give the whole-run
numbers bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from gradprobe.analysis.compare.matching import CellMatch
from gradprobe.analysis.stats.estimators import (
    count_change_pvalues,
    discordant_pvalues,
    log10_or_nan,
    mannwhitney_pvalues,
    mean_difference_ci,
    wilcoxon_pvalues,
)
from gradprobe.analysis.stats.median_interval import median_ci
from gradprobe.analysis.stats.series import Series
from gradprobe.analysis.stats.structural import ZERO_GRADIENT_METRICS, structurally_zero
from gradprobe.bench.engine.metrics import LAYER_METRICS
from gradprobe.bench.init.initialization import fingerprint_scheme

# With n pairs the smallest two-sided Wilcoxon p is 2 / 2**n: 0.031 at n = 6, so fewer pairs
# could never pass the significance gate.
MIN_PAIRED_SEEDS = 6
ZERO_TEST_METRICS = ("grad_mean_abs", "act_rms", "grad_act_rms")
TESTS = ("ratio", "zero_fraction")
SORT_COLUMNS = ["_metric", "_pairing", "_test", "_rank", "_row"]


@dataclass(frozen=True)
class PairTests:
    """What one matched pair contributes. ``pairing``: its row of
    :attr:`~gradprobe.analysis.compare.comparison.Comparison.pairing`; ``tests``: its test
    rows with the :data:`SORT_COLUMNS`; ``dead``: the keys of its structurally zero
    parameters (``cell_base``, ``cell_run``, the key axes, ``param``, ``layer``, ``kind``,
    ``_rank``, ``_row``)."""

    pairing: pd.DataFrame
    tests: pd.DataFrame
    dead: pd.DataFrame


def pair_tests(bs: Series, rs: Series, pair: CellMatch, columns: tuple[np.ndarray, np.ndarray],
               metrics: list[str], rngs: list[np.random.Generator], *, rank: int,
               n_resamples: int, confidence: float) -> PairTests:
    """The tests of the one cell pair in ``pair.pairs``; ``bs``/``rs`` its cells' series,
    ``columns`` the common seeds' columns in each, ``rngs`` one Generator per metric and
    ``rank`` the RUN cell's place in the order of the tests."""
    pairing = cell_pairing(bs, rs, pair, columns)
    rows = series_rows(bs, rs, pair).merge(pairing[["cell_base", "cell_run", "paired"]])
    structural = (structurally_zero(bs)[rows["i_base"].to_numpy()]
                  & structurally_zero(rs)[rows["i_run"].to_numpy()])
    rows = rows.assign(_row=np.arange(len(rows)))
    frames = []
    for index, (metric, rng) in enumerate(zip(metrics, rngs, strict=True)):
        keep = ~structural if metric in ZERO_GRADIENT_METRICS else np.ones(len(rows), bool)
        if metric in LAYER_METRICS:
            keep &= (rows["kind"] == "weight").to_numpy()
        chosen = rows[keep].reset_index(drop=True)
        for frame in metric_tests(metric, bs, rs, chosen, columns, rng=rng,
                                  n_resamples=n_resamples, confidence=confidence):
            frames.append(frame.assign(_metric=index, _pairing=int(not rows["paired"].iloc[0]),
                                       _test=TESTS.index(frame["test"].iloc[0]), _rank=rank))
    tests = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    dead = rows[structural].drop(columns=["i_base", "i_run", "paired"]).assign(_rank=rank)
    return PairTests(pairing, tests, dead)


def one_pair(cells: CellMatch, index: int) -> CellMatch:
    """``cells`` with only its ``index``-th matched pair."""
    return replace(cells, pairs=cells.pairs.iloc[[index]].reset_index(drop=True))


def series_rows(bs: Series, rs: Series, cells: CellMatch) -> pd.DataFrame:
    """Matched (cell, parameter) series: ``i_base``, ``i_run`` (rows of each side's
    matrices), ``cell_base``, ``cell_run``, the key axes, ``param``, ``layer``, ``kind``."""
    run_keys = rs.keys[["cell_id", "param", "layer", "kind"]].reset_index(names="i_run")
    run_keys = run_keys.merge(cells.pairs, left_on="cell_id", right_on="cell_run")
    base_keys = bs.keys[["cell_id", "param"]].reset_index(names="i_base")
    rows = run_keys.merge(base_keys, left_on=["cell_base", "param"],
                          right_on=["cell_id", "param"])
    return rows[["i_base", "i_run", "cell_base", "cell_run", *cells.key, "param", "layer",
                 "kind"]]


def cell_pairing(bs: Series, rs: Series, cells: CellMatch,
                 columns: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    """Per matched cell: paired by seed or not, and why (columns in :class:`Comparison`)."""
    first_base = bs.keys.reset_index().groupby("cell_id")["index"].first()
    first_run = rs.keys.reset_index().groupby("cell_id")["index"].first()
    records = []
    for pair in cells.pairs.itertuples(index=False):
        left = bs.fingerprints[first_base[pair.cell_base], columns[0]]
        right = rs.fingerprints[first_run[pair.cell_run], columns[1]]
        mismatched = int((left != right).sum())
        n_common = len(columns[0])
        paired = mismatched == 0 and n_common >= MIN_PAIRED_SEEDS
        note = pairing_note(paired, n_common, mismatched, len(bs.seeds), len(rs.seeds),
                            schemes=(_schemes(left), _schemes(right)))
        one_side = _params(bs, pair.cell_base) ^ _params(rs, pair.cell_run)
        if one_side:  # e.g. depth differs on purpose: layers.4 exists on one side only
            note += f"; not compared (on one side only): {', '.join(sorted(one_side))}"
        records.append({"cell_base": pair.cell_base, "cell_run": pair.cell_run,
                        "paired": paired, "n_base": len(bs.seeds), "n_run": len(rs.seeds),
                        "n_common": n_common, "n_mismatched": mismatched, "note": note})
    frame = pd.DataFrame(records)
    return frame.merge(cells.pairs, on=["cell_base", "cell_run"])


def _schemes(fingerprints: np.ndarray) -> str:
    return "+".join(sorted({fingerprint_scheme(f) for f in fingerprints}))


def _params(series: Series, cell_id: str) -> set[str]:
    return set(series.keys.loc[series.keys["cell_id"] == cell_id, "param"])


def pairing_note(paired: bool, n_common: int, mismatched: int, n_base: int,
                 n_run: int, schemes: tuple[str, str] = ("xxh3", "xxh3")) -> str:
    """One sentence on how a cell is compared; ``schemes``: the fingerprint scheme of each
    side's common seeds (:func:`gradprobe.bench.init.initialization.fingerprint_scheme`)."""
    if paired:
        unused = n_base + n_run - 2 * n_common
        extra = f"; {unused} seeds run on one side only are not used" if unused else ""
        return f"paired by seed on {n_common} seeds with identical initial weights{extra}"
    if n_common == 0:
        why = "the two sides ran no seed in common"
    elif mismatched and set(schemes) == {"sha256", "xxh3"}:
        why = (f"the two sides fingerprint initial weights differently ({schemes[0]} vs "
               f"{schemes[1]}: a baseline made before gradprobe fingerprinted with XXH3, or "
               "init_rng = \"device\" on one side), so identical weights cannot be verified; "
               "save the baseline again to pair by seed")
    elif mismatched:
        why = (f"initial-weight fingerprints differ on {mismatched} of {n_common} common seeds "
               "(other initial weights, e.g. a PyTorch whose RNG stream changed)")
    else:
        why = f"only {n_common} common seeds (pairing needs {MIN_PAIRED_SEEDS})"
    return f"unpaired (Mann-Whitney U, two-sample bootstrap) on {n_base} vs {n_run} seeds: {why}"


def metric_tests(metric: str, bs: Series, rs: Series, rows: pd.DataFrame,
                 columns: tuple[np.ndarray, np.ndarray], *, rng: np.random.Generator,
                 n_resamples: int, confidence: float) -> list[pd.DataFrame]:
    """Ratio and zero-fraction tests of one metric, for the paired and the unpaired rows."""
    out = []
    paired = rows["paired"].to_numpy(dtype=bool)
    for mask, is_paired in ((paired, True), (~paired, False)):
        if not mask.any():
            continue
        base = bs.values[metric][rows["i_base"].to_numpy()[mask]]
        run = rs.values[metric][rows["i_run"].to_numpy()[mask]]
        if is_paired:
            base, run = base[:, columns[0]], run[:, columns[1]]
        keys = rows[mask].drop(columns=["i_base", "i_run", "paired"]).reset_index(drop=True)
        keys["metric"] = metric
        keys["pairing"] = "paired" if is_paired else "unpaired"
        ratio, zeros = _side_statistics(base, run, paired=is_paired, rng=rng,
                                        n_resamples=n_resamples, confidence=confidence)
        out.append(pd.concat([keys, ratio], axis=1).assign(test="ratio"))
        if metric in ZERO_TEST_METRICS:  # for every row: the family is fixed in advance
            out.append(pd.concat([keys, zeros], axis=1).assign(test="zero_fraction"))
    return out


def _side_statistics(base: np.ndarray, run: np.ndarray, *, paired: bool,
                     rng: np.random.Generator, n_resamples: int,
                     confidence: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(ratio table, zero-count table)`` for ``(rows x seeds)`` matrices of both sides."""
    blog, bzero, bbad = log10_or_nan(base)
    rlog, rzero, rbad = log10_or_nan(run)
    options = {"rng": rng, "n_resamples": n_resamples, "confidence": confidence}
    if paired:
        diff = rlog - blog
        # The typical seed's ratio: median of per-seed log ratios, sign-test interval
        # (median_interval.median_ci); a mean's t interval covered 83-86% on real records.
        interval = median_ci(diff, confidence=confidence)
        p = wilcoxon_pvalues(diff)
        only_base, only_run = (bzero & ~rzero).sum(axis=1), (rzero & ~bzero).sum(axis=1)
        zero_p, discordant = discordant_pvalues(only_base, only_run), only_base + only_run
    else:
        interval = mean_difference_ci(rlog, blog, **options)
        p = mannwhitney_pvalues(rlog, blog)
        zero_p = count_change_pvalues(bzero.sum(1), base.shape[1], rzero.sum(1), run.shape[1])
        discordant = np.full(len(base), np.nan)
    counts = {"n_base": base.shape[1], "n_run": run.shape[1], "base_zero": bzero.sum(1),
              "run_zero": rzero.sum(1), "base_nonfinite": bbad.sum(1),
              "run_nonfinite": rbad.sum(1)}
    ratio = pd.DataFrame({**counts, "n_used": interval.n, "log10_ratio": interval.point,
                          "ratio": 10**interval.point, "ci_low": 10**interval.low,
                          "ci_high": 10**interval.high, "p_value": p})
    zeros = pd.DataFrame({**counts, "n_used": np.full(len(base), base.shape[1]),
                          "zero_discordant": np.asarray(discordant, dtype=np.float64),
                          "p_value": zero_p})
    return ratio, zeros
