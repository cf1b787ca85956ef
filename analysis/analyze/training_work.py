"""The training tables, streamed: computed per unit of cells, assembled over the run.

Every training statistic (:mod:`gradprobe.analysis.stats.training_stats`) is a function of
one training run (a cell and training setup: loss curves, gradient curves, steps to reach a
loss) or of a plain/residual pair of them (reach tests, final-loss effects), and a
``cells`` unit of :mod:`gradprobe.analysis.analyze.work_plan` is exactly one cell or one
such pair. :func:`unit_training` reads the unit's training files only (the gradient table
with only the columns its curves need) and returns its rows of every table with a sort
key; :func:`assemble_training` puts them in the order one pivot of every training record
gave (runs sorted by their axes and training settings) and computes what spans the run:
Benjamini-Hochberg over all reach tests and over all final-loss effects, and
``n_excluded`` against the run's training seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradprobe.analysis.analyze.assembly import adjust_family
from gradprobe.analysis.stats.training_stats import IDENTITY, RUN_KEY, TABLES, analyze_training
from gradprobe.bench.store.train_records import TRAIN_DIR, read_training

# What :func:`gradient_curves` reads of the (large) gradient table.
GRADS_COLUMNS = ["cell_id", "train_id", *IDENTITY, "seed", "step", "layer", "kind",
                 "grad_mean_abs"]
# Each table's run: the column naming its cell (the control cell for a pair's tables).
RUN_CELL = {"train_curves": "cell_id", "train_grads": "cell_id", "train_reach": "cell_id",
            "train_tests": "cell_control", "train_final": "cell_control"}
ADJUSTED = ("train_tests", "train_final")


def training_payload(run_dir: Path, target_loss) -> dict[str, Any] | None:
    """What a unit needs to find and judge its training records; None for a run without
    training records."""
    if not (Path(run_dir) / TRAIN_DIR / "loss").is_dir():
        return None
    return {"run_dir": str(run_dir), "target_loss": [float(t) for t in target_loss]}


def unit_training(cells: list[dict], training: dict[str, Any], settings: dict[str, Any],
                  rng: np.random.Generator) -> dict[str, Any]:
    """``{"training": {table: rows with _row}, "train_keys": runs' keys, "train_seeds"}``
    for the unit's ``cells``; an empty dict when they have no training records."""
    run_dir, ids = Path(training["run_dir"]), [c["cell_id"] for c in cells]
    loss = read_training(run_dir, "loss", cells=ids)
    if loss.empty:
        return {}
    grads = read_training(run_dir, "grads", cells=ids, columns=GRADS_COLUMNS)
    tables = analyze_training(loss, grads, tuple(training["target_loss"]), rng=rng,
                              n_resamples=settings["n_resamples"], alpha=settings["alpha"])
    return {"training": {name: frame.assign(_row=np.arange(len(frame)))
                         for name, frame in tables.items()},
            "train_keys": loss.drop_duplicates(RUN_KEY)[[*RUN_KEY, *IDENTITY]],
            "train_seeds": np.sort(loss["seed"].unique())}


def assemble_training(results: list[dict[str, Any]], alpha: float) -> dict[str, pd.DataFrame]:
    """Every training table (:data:`TABLES`) from the units' :func:`unit_training` results,
    in whole-run order; empty frames for a run without training."""
    parts = [r for r in results if r.get("training")]
    if not parts:
        return {name: pd.DataFrame() for name in TABLES}
    rank = _run_ranks(pd.concat([p["train_keys"] for p in parts], ignore_index=True))
    seeds = np.unique(np.concatenate([p["train_seeds"] for p in parts]))
    tables = {}
    for name in TABLES:
        frames = [p["training"][name] for p in parts if not p["training"][name].empty]
        tables[name] = _ordered(frames, rank, RUN_CELL[name])
    if not tables["train_final"].empty:
        final = tables["train_final"]
        final["n_excluded"] = len(seeds) - final["n_pairs"]
    for name in ADJUSTED:
        if not tables[name].empty:
            adjust_family(tables[name], alpha)
    return tables


def _run_ranks(keys: pd.DataFrame) -> dict[tuple[str, str], int]:
    """``{(cell_id, train_id): place}`` of every run, in :func:`build_runs`' order: by the
    identity columns, ties in the order of the cells' files."""
    identity = [c for c in IDENTITY if c in keys.columns]
    keys = keys.sort_values("cell_id", kind="stable").sort_values(identity, kind="stable")
    return {run: i for i, run in enumerate(zip(keys["cell_id"], keys["train_id"],
                                               strict=True))}


def _ordered(frames: list[pd.DataFrame], rank: dict, cell_column: str) -> pd.DataFrame:
    """The units' rows of one table by their run's rank, then their order in the unit."""
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    runs = zip(table[cell_column], table["train_id"], strict=True)
    table["_rank"] = [rank[run] for run in runs]
    ordered = table.sort_values(["_rank", "_row"], kind="stable")
    return ordered.drop(columns=["_rank", "_row"]).reset_index(drop=True)
