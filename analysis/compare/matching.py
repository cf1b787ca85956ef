"""What the two sides of a comparison have in common, and where they differ.

Cells are matched by their *sweep axes*, never by ``cell_id`` (which also hashes the seeds):
every axis column (model and data keys, device, dtype) is part of the match key, except a
key that is constant within each side but has a different value on the two sides. Such a key
is a deliberate (or accidental) difference between the runs, such as ``init_gain`` 1.0 vs
1.05, a PyTorch upgrade's dtype or device: it is listed at the top of the comparison and left
out of the key, so the cells still pair up. A key that is swept on one side only, or axis
values present on one side only, leave cells unmatched; they are listed, not compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from gradprobe.analysis.compare.sides import Side, seed_summary
from gradprobe.bench.store.records import AXIS_COLUMNS

# Environment entries that can change the numbers, in the order they are listed.
ENVIRONMENT_KEYS = ("torch", "gradprobe", "git_commit", "python", "numpy", "scipy", "cuda",
                    "cpu", "gpus", "platform", "torch_threads", "tf32_matmul",
                    "deterministic_algorithms")


@dataclass(frozen=True)
class CellMatch:
    """Cells matched across the sides.

    ``pairs``: one row per matched cell, columns ``cell_base``, ``cell_run`` and the
    ``key`` axis columns. ``base_only``/``run_only``: axis columns of unmatched cells.
    ``key``: axis columns used for matching; ``ignored``: axis columns constant on both
    sides with different values (reported as config differences).
    """

    pairs: pd.DataFrame
    base_only: pd.DataFrame
    run_only: pd.DataFrame
    key: list[str]
    ignored: list[str]

    def label_axes(self) -> list[str]:
        """Key axes that vary across matched cells: enough to name each of them."""
        return [c for c in self.key if self.pairs[c].nunique() > 1]


def match_cells(base: pd.DataFrame, run: pd.DataFrame) -> CellMatch:
    """Match two :meth:`~gradprobe.analysis.compare.sides.Side.cell_table` frames (one row
    per cell: ``cell_id`` and every axis column) by their sweep axes (module docstring)."""
    ignored = [c for c in AXIS_COLUMNS
               if base[c].nunique() == 1 and run[c].nunique() == 1
               and base[c].iloc[0] != run[c].iloc[0]]
    key = [c for c in AXIS_COLUMNS if c not in ignored]
    merged = base.merge(run, on=key, how="outer", suffixes=("_base", "_run"), indicator=True)
    pairs = merged[merged["_merge"] == "both"]
    pairs = pairs.rename(columns={"cell_id_base": "cell_base", "cell_id_run": "cell_run"})
    pairs = pairs[["cell_base", "cell_run", *key]].reset_index(drop=True)
    base_only = base[~base["cell_id"].isin(pairs["cell_base"])][list(AXIS_COLUMNS)]
    run_only = run[~run["cell_id"].isin(pairs["cell_run"])][list(AXIS_COLUMNS)]
    return CellMatch(pairs, base_only.reset_index(drop=True), run_only.reset_index(drop=True),
                     key, ignored)


def config_settings(side: Side) -> dict[str, Any]:
    """A side's effective settings as dotted keys: every ``[model]``/``[data]`` key (a list
    where it is swept), the seeds actually in the records, devices, dtypes, ``[compare]``."""
    config = side.config
    axes = {k: list(v) for k, v in config.sweep.axes}
    out: dict[str, Any] = {"name": config.name}
    for section, values in (("model", asdict(config.model)), ("data", asdict(config.data))):
        for key, value in values.items():
            if key == "input":
                value = config.data.input_label
            out[f"{section}.{key}"] = axes.get(key, value)
    out["sweep.seeds"] = seed_summary(side.seeds)
    out["sweep.device"] = list(config.sweep.device)
    out["sweep.dtype"] = list(config.sweep.dtype)
    out["compare.prefer"] = dict(config.compare.prefer)
    out["compare.alpha"] = config.compare.alpha
    out["compare.tolerance"] = config.compare.tolerance
    return out


def config_differences(base: Side, run: Side) -> list[dict[str, Any]]:
    """``[{"key", "base", "run"}]`` for every setting that differs (:func:`config_settings`)."""
    left, right = config_settings(base), config_settings(run)
    return [{"key": k, "base": _plain(left.get(k)), "run": _plain(right.get(k))}
            for k in left if left.get(k) != right.get(k)]


def environment_differences(base: Side, run: Side) -> list[dict[str, Any]]:
    """``[{"key", "base", "run"}]`` for the :data:`ENVIRONMENT_KEYS` that differ."""
    left, right = _environment(base), _environment(run)
    return [{"key": k, "base": left.get(k), "run": right.get(k)}
            for k in ENVIRONMENT_KEYS if left.get(k) != right.get(k)]


def _environment(side: Side) -> dict[str, Any]:
    env = dict(side.manifest.environment)
    git = env.pop("git", None) or {}
    commit = git.get("commit")
    env["git_commit"] = f"{commit[:10]}{' (dirty)' if git.get('dirty') else ''}" \
        if commit else None
    return env


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, tuples to lists."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
