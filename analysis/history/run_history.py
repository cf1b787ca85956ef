"""The history of analysed runs: per-run summaries keyed by commit and versions, and their
trends with change points.

``reports/history/run-<run_id>.parquet`` (``history_version`` 1 in the Parquet metadata
``gradprobe.history_version``), one file per run, so appending is one atomic write and
re-appending the same run rewrites the same file instead of duplicating it. Columns:

* ``run_id`` (hash of the config, its start time and commit), ``run_date`` (the run's
  ``started_at``), ``git_commit``, ``git_dirty``, ``gradprobe_version``, ``torch_version``,
  ``config_name``, ``config_sha256``, ``seeds`` (e.g. ``0..15``)
* the axis columns of the cell, ``param``, ``layer``, ``kind``, ``metric``
* ``n_seeds``, ``n_used``, ``n_zero``, ``n_nonfinite``, ``geo_mean``, ``ci_low``,
  ``ci_high``, ``log10_mean`` (from ``analysis/summary.parquet``)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gradprobe.analysis.analyze import load_analysis
from gradprobe.analysis.compare.sides import seed_summary
from gradprobe.analysis.history.changepoints import Step, detect_steps
from gradprobe.analysis.stats.series import axis_columns
from gradprobe.bench.store.manifest import read_manifest
from gradprobe.bench.store.records import AXIS_COLUMNS
from gradprobe.core.atomic_files import ensure_directory, write_atomic
from gradprobe.core.documents import read_versioned_parquet
from gradprobe.core.errors import UserError
from gradprobe.core.hashing import short_hash

HISTORY_DIR = Path("reports") / "history"
HISTORY_VERSION = 1
META_VERSION = b"gradprobe.history_version"
RUN_COLUMNS = ["run_id", "run_date", "git_commit", "git_dirty", "gradprobe_version",
               "torch_version", "config_name", "config_sha256", "seeds"]
VALUE_COLUMNS = ["n_seeds", "n_used", "n_zero", "n_nonfinite", "geo_mean", "ci_low",
                 "ci_high", "log10_mean"]


def history_rows(run_dir: str | Path) -> pd.DataFrame:
    """The history rows of an analysed run (columns in the module docstring)."""
    manifest = read_manifest(run_dir)
    summary = load_analysis(run_dir).summary
    env, config = manifest.environment, manifest.config
    git = manifest.git
    run = {"run_id": short_hash({"config": config.sha256, "seeds": list(config.seeds),
                                 "started_at": manifest.started_at,
                                 "commit": git.get("commit")}),
           "run_date": manifest.started_at, "git_commit": git.get("commit"),
           "git_dirty": git.get("dirty"), "gradprobe_version": env.get("gradprobe"),
           "torch_version": env.get("torch"), "config_name": config.name,
           "config_sha256": config.sha256, "seeds": seed_summary(config.seeds)}
    keys = [*axis_columns(summary), "param", "layer", "kind", "metric"]
    rows = summary[keys + VALUE_COLUMNS].copy()
    for column in reversed(RUN_COLUMNS):
        rows.insert(0, column, run[column])
    return rows


def append_run(run_dir: str | Path, *, root: str | Path = HISTORY_DIR) -> tuple[Path, int]:
    """Write the run's rows to ``root/run-<run_id>.parquet``; returns the path and row count.
    Appending a run again replaces its file with the same content."""
    rows = history_rows(run_dir)
    return write_rows(rows, root=root), len(rows)


def write_rows(rows: pd.DataFrame, *, root: str | Path = HISTORY_DIR) -> Path:
    """Write one run's history rows atomically to ``root/run-<run_id>.parquet``."""
    if rows["run_id"].nunique() != 1:
        raise ValueError("history rows must come from exactly one run")
    root = Path(root)
    ensure_directory(root)
    path = root / f"run-{rows['run_id'].iloc[0]}.parquet"
    table = pa.Table.from_pandas(rows, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           META_VERSION: str(HISTORY_VERSION).encode()})
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return path


def read_history(root: str | Path = HISTORY_DIR) -> pd.DataFrame:
    """Every run in the history, oldest first; UserError when there is none or a file is
    unreadable or from a newer gradprobe."""
    files = sorted(Path(root).glob("run-*.parquet"))
    if not files:
        raise UserError(f"{root}: no history yet; add analysed runs with "
                        "`gradprobe history add RUN_DIR`")
    frames = [read_versioned_parquet(path, key=META_VERSION, current=HISTORY_VERSION,
                                     what="history", fix="remove it and add its run again"
                                     )[0].to_pandas() for path in files]
    history = pd.concat(frames, ignore_index=True)
    return history.sort_values(["run_date", "run_id"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Trend:
    """One series over runs: ``label`` names it, ``runs`` holds its history rows in run
    order (columns as :func:`history_rows`), ``steps`` the detected change points."""

    label: str
    runs: pd.DataFrame
    steps: list[Step]


def input_side_weights(history: pd.DataFrame) -> tuple[str, ...]:
    """Per config, its input-side weight: the first parameter whose kind ends in ``weight``
    at the lowest layer index (``layers.0.weight`` for the MLP, ``blocks.0.norm1.weight``
    for the transformer preset); the default series of :func:`trends`."""
    weights = history[history["kind"].astype(str).str.endswith("weight")]
    first = weights.sort_values("layer", kind="stable").groupby("config_name")["param"].first()
    return tuple(dict.fromkeys(first))


def trends(history: pd.DataFrame, *, metrics=("grad_mean_abs",),
           params: tuple[str, ...] | None = None, where: dict | None = None,
           config: str | None = None, tolerance: float) -> list[Trend]:
    """Select series (config name, metrics, parameters, axis values) and detect steps;
    ``params`` None selects each config's :func:`input_side_weights`."""
    params = input_side_weights(history) if params is None else params
    rows = history[history["metric"].isin(metrics) & history["param"].isin(params)]
    if config is not None:
        rows = rows[rows["config_name"] == config]
    for key, value in (where or {}).items():
        if key not in rows.columns:
            raise UserError(f"--where {key}: not an axis; use one of {', '.join(AXIS_COLUMNS)}")
        rows = rows[rows[key].astype(str).str.lower() == str(value).lower()]
    if rows.empty:
        raise UserError("no history rows match the selection (check --metric, --param, "
                        "--where and --config)")
    keys = ["config_name", *[c for c in AXIS_COLUMNS if c in rows], "param", "metric"]
    varying = [c for c in keys if rows[c].nunique() > 1] or ["param", "metric"]
    out = []
    for values, part in rows.groupby(keys, sort=False, dropna=False):
        named = dict(zip(keys, values, strict=True))
        part = part[part["log10_mean"].notna()].reset_index(drop=True)
        label = " ".join(f"{k}={named[k]}" for k in varying)
        out.append(Trend(label, part, detect_steps(part["log10_mean"].to_numpy(),
                                                   tolerance=tolerance)))
    return out


def format_trends(items: list[Trend]) -> str:
    """Plain text: one block per series, one line per run, change points marked."""
    lines = []
    for trend in items:
        lines.append(f"{trend.label}: {len(trend.runs)} runs, "
                     f"{len(trend.steps) or 'no'} change point(s)")
        starts = {s.index: s for s in trend.steps}
        for i, run in trend.runs.iterrows():
            mark = f"  <- step x{starts[i].ratio:.4g}" if i in starts else ""
            lines.append(f"  {i:>3} {run['run_date']}  {str(run['git_commit'])[:10]:<10} "
                         f"torch {run['torch_version']:<14} {run['geo_mean']:.4g} "
                         f"[{run['ci_low']:.4g}, {run['ci_high']:.4g}]{mark}")
    return "\n".join(lines)
