"""One unit of the analysis (:mod:`gradprobe.analysis.analyze.work_plan`), in any process.

:func:`analyse_unit` reads the unit's cells one file at a time, only the columns its
statistics need (pyarrow), pivots each into a :class:`~gradprobe.analysis.stats.series.Series`
and returns the unit's rows of the analysis tables, each row with its sort key
(``_metric``, ``_role``, ``_rank``, ``_row``: :mod:`gradprobe.analysis.analyze.assembly`
puts every unit's rows in the order of the whole-run analysis). Cross-cell units keep only
what their statistic needs of each cell (the first and output layers' weights for depth
trends), so a unit holds at most one whole cell beside its reductions, or a plain/residual
pair.

Payloads and results cross process boundaries: a payload is a JSON-able dict, results are
small DataFrames. Randomness: each unit draws from its own Generator, seeded from the
bootstrap seed, the table and the unit's cell ids (:func:`unit_rng`), so an interval does
not depend on which units ran before it, or where.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gradprobe.analysis.analyze.training_work import unit_training
from gradprobe.analysis.stats.device_agreement import AGREEMENT_METRICS, relative_differences
from gradprobe.analysis.stats.effects import EFFECT_METRICS, paired_effects
from gradprobe.analysis.stats.series import Series, cell_series, concat_series
from gradprobe.analysis.stats.summary import describe
from gradprobe.analysis.stats.trends import (
    TREND_METRICS,
    depth_trends,
    layer_contrasts,
    role_mask,
)
from gradprobe.analysis.stats.width_scaling import WIDTH_METRICS, width_exponents
from gradprobe.bench.store.records import ANALYSIS_METRICS, read_table

ROW_COLUMNS = ["seed", "param", "layer", "kind", "numel"]
ROLES = ("first", "output")
# Child stream of each table, as in the whole-run analysis (its spawn(6) order).
TABLE_STREAMS = {"summary": 0, "effects": 1, "trends": 2, "contrasts": 3, "training": 4,
                 "width": 5}


def unit_payload(kind: str, cells: list, settings: dict[str, Any],
                 training: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-able payload of one unit: ``kind``, its cells (``CellFile.to_json``), the
    analysis settings (``AnalysisSettings`` as a dict) and, for a ``cells`` unit of a run
    that trained, ``training`` (:func:`training_work.training_payload`)."""
    payload = {"kind": kind, "cells": [c.to_json() for c in cells], "settings": settings}
    if kind == "cells" and training is not None:
        payload["training"] = training
    return payload


def analyse_unit(payload: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """The rows one unit contributes: ``{table name: DataFrame}`` plus ``seeds``
    (``{cell_id: seeds}`` for ``cells`` units) or ``differences`` (``devices`` units)."""
    kind = payload["kind"]
    if kind == "cells":
        return _cells(payload)
    if kind == "depth":
        return {"trends": _trends(payload)}
    if kind == "width":
        return {"width": _width(payload)}
    return {"differences": _differences(payload)}


def read_cell(cell: dict[str, Any], metrics, fingerprints: bool = False) -> Series:
    """One cell's :class:`Series` of ``metrics``, read with only the columns it needs."""
    columns = [*ROW_COLUMNS, *(["init_fingerprint"] if fingerprints else []), *metrics]
    table = read_table(cell["path"], columns)
    return cell_series(table, cell["cell_id"], cell["axes"], metrics)


def unit_rng(settings: dict[str, Any], table: str, cells: list[dict]) -> np.random.Generator:
    """The Generator of one table of one unit: a SeedSequence of the bootstrap seed, the
    table's stream number and the unit's cell ids."""
    ids = [int.from_bytes(c["cell_id"].encode(), "big") for c in cells]
    return np.random.default_rng([settings["seed"], TABLE_STREAMS[table], *ids])


def _cells(payload: dict[str, Any]) -> dict[str, Any]:
    """Summary and contrasts of one cell or a pair, and the pair's paired effects."""
    cells, settings = payload["cells"], payload["settings"]
    series = concat_series([read_cell(c, ANALYSIS_METRICS, fingerprints=True)
                            for c in cells])
    options = {"n_resamples": settings["n_resamples"], "confidence": settings["confidence"]}
    summary = describe(series, rng=unit_rng(settings, "summary", cells), **options)
    contrasts = layer_contrasts(series, alpha=settings["alpha"],
                               confidence=settings["confidence"])
    effects = pd.DataFrame()
    if len(cells) == 2:
        effects = paired_effects(series, alpha=settings["alpha"],
                                 confidence=settings["confidence"])
    ranks, rows = _ranks(cells), _rows_in_cell(series.keys)
    training = {} if "training" not in payload else unit_training(
        cells, payload["training"], settings, unit_rng(settings, "training", cells))
    return {**training, "summary": _summary_order(summary, series.keys, ranks),
            "contrasts": contrasts.assign(
                _metric=contrasts["metric"].map(TREND_METRICS.index),
                _rank=contrasts["cell_id"].map(ranks)),
            "effects": effects if effects.empty else effects.assign(
                _metric=effects["metric"].map(EFFECT_METRICS.index),
                _rank=effects["cell_control"].map(ranks),
                _row=[rows[k] for k in zip(effects["cell_control"], effects["param"],
                                           strict=True)]),
            "seeds": {c["cell_id"]: _cell_seeds(series, c["cell_id"]) for c in cells}}


def _summary_order(summary: pd.DataFrame, keys: pd.DataFrame, ranks: dict) -> pd.DataFrame:
    """``describe`` stacks the keys once per metric: its sort key follows."""
    repeats = len(summary) // max(1, len(keys))
    rank = keys["cell_id"].map(ranks).to_numpy()
    row = keys.groupby("cell_id", sort=False).cumcount().to_numpy()
    return summary.assign(_metric=np.repeat(np.arange(repeats), len(keys)),
                          _rank=np.tile(rank, repeats), _row=np.tile(row, repeats))


def _trends(payload: dict[str, Any]) -> pd.DataFrame:
    """Depth trends of a group of cells differing only in depth, from the first and output
    layers' weights of each cell (the rest of a cell is dropped as soon as it is read)."""
    cells, settings = payload["cells"], payload["settings"]
    parts = []
    for cell in cells:
        series = read_cell(cell, TREND_METRICS)
        parts.append(series.rows(role_mask(series.keys, "first")
                                 | role_mask(series.keys, "output")))
        del series
    series = concat_series(parts)
    trends = depth_trends(series, rng=unit_rng(settings, "trends", cells),
                          n_resamples=settings["n_resamples"],
                          confidence=settings["confidence"])
    if trends.empty:
        return trends
    ranks = _ranks(cells)
    first_rank = {role: min((ranks[c] for c in series.keys["cell_id"][
        role_mask(series.keys, role)]), default=0) for role in ROLES}
    return trends.assign(_metric=trends["metric"].map(TREND_METRICS.index),
                         _role=trends["role"].map(ROLES.index),
                         _rank=trends["role"].map(first_rank))


def _width(payload: dict[str, Any]) -> pd.DataFrame:
    """Width exponents of a group of cells differing only in width."""
    cells, settings = payload["cells"], payload["settings"]
    series = concat_series([read_cell(c, WIDTH_METRICS) for c in cells])
    width = width_exponents(series, rng=unit_rng(settings, "width", cells),
                            n_resamples=settings["n_resamples"],
                            confidence=settings["confidence"])
    if width.empty:
        return width
    # A row's place is its parameter's first appearance among the group's cells.
    keys = series.keys.assign(_rank=series.keys["cell_id"].map(_ranks(cells)),
                              _row=series.keys.groupby("cell_id", sort=False).cumcount())
    first = keys.sort_values(["_rank", "_row"]).drop_duplicates("param").set_index("param")
    return width.assign(_metric=width["metric"].map(WIDTH_METRICS.index),
                        _rank=width["param"].map(first["_rank"]).to_numpy(),
                        _row=width["param"].map(first["_row"]).to_numpy())


def _differences(payload: dict[str, Any]) -> dict:
    """Relative differences between the devices of cells differing only in device."""
    frames = []
    for cell in payload["cells"]:
        table = read_table(cell["path"], ["seed", "param", *AGREEMENT_METRICS])
        frames.append(table.to_pandas().assign(**cell["axes"]))
    return relative_differences(pd.concat(frames, ignore_index=True))


def _ranks(cells: list[dict]) -> dict[str, int]:
    return {c["cell_id"]: c["rank"] for c in cells}


def _rows_in_cell(keys: pd.DataFrame) -> dict[tuple[str, str], int]:
    """``{(cell_id, param): position among the cell's keys}``."""
    rows = keys.groupby("cell_id", sort=False).cumcount()
    return dict(zip(zip(keys["cell_id"], keys["param"], strict=True), rows, strict=True))


def _cell_seeds(series: Series, cell_id: str) -> np.ndarray:
    """Seeds with at least one record of ``cell_id`` in ``series``."""
    mask = (series.keys["cell_id"] == cell_id).to_numpy()
    return series.seeds[series.present[mask].any(axis=0)]
