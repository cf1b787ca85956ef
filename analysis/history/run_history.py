"""The history of analysed runs: per-run summaries keyed by commit and versions, and their
trends with change points.

``reports/history/run-<run_id>.parquet`` (``history_version`` 3 in the Parquet metadata
``gradprobe.history_version``), one file per run, so appending is one atomic write and
re-appending the same run rewrites the same file instead of duplicating it. Columns:

* ``run_id`` (hash of the config, its start time, the commits and the run directory's
  name), ``run_date`` (the run's
  ``started_at``), ``git_commit``, ``commit_date``, ``branch``, ``git_dirty`` (the measured
  code's repository: the manifest's ``code``), ``gradprobe_commit``, ``gradprobe_version``,
  ``torch_version``, ``config_name``, ``config_sha256``, ``seeds`` (e.g. ``0..15``),
  ``residual_switched`` (whether the run's ``residual`` flag switched skip connections:
  False for a factory that takes no ``residual``, whose cells are the model *as built*;
  :func:`gradprobe.analysis.report.variants.residual_switch_applies`)
* the axis columns of the cell, ``param``, ``layer``, ``kind``, ``metric``, ``headline``
  (the row is of the config's ``[report]`` headline cell and metric)
* ``n_seeds``, ``n_used``, ``n_zero``, ``n_nonfinite``, ``geo_mean``, ``ci_low``,
  ``ci_high``, ``log10_mean`` (from ``analysis/summary.parquet``)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gradprobe.analysis.analyze import AnalysisSettings, analyze_run, is_stale, load_analysis
from gradprobe.analysis.compare.sides import seed_summary
from gradprobe.analysis.history.changepoints import Step, detect_steps
from gradprobe.analysis.report.headline import headline_selection, select
from gradprobe.analysis.report.variants import residual_switch_applies
from gradprobe.analysis.stats.series import axis_columns
from gradprobe.bench.store.manifest import Manifest, read_manifest
from gradprobe.bench.store.records import AXIS_COLUMNS
from gradprobe.core.atomic_files import ensure_directory, write_atomic
from gradprobe.core.documents import read_versioned_parquet
from gradprobe.core.errors import UserError
from gradprobe.core.hashing import short_hash

HISTORY_DIR = Path("reports") / "history"
HISTORY_VERSION = 3
META_VERSION = b"gradprobe.history_version"
RUN_COLUMNS = ["run_id", "run_date", "git_commit", "commit_date", "branch", "git_dirty",
               "gradprobe_commit", "gradprobe_version", "torch_version", "config_name",
               "config_sha256", "seeds", "residual_switched"]
# The columns a Trend's runs keep (besides its key columns).
TREND_COLUMNS = ["run_id", "run_date", "git_commit", "commit_date", "git_dirty",
                 "torch_version", "config_name", "layer", "headline", "geo_mean", "ci_low",
                 "ci_high", "log10_mean"]
VALUE_COLUMNS = ["n_seeds", "n_used", "n_zero", "n_nonfinite", "geo_mean", "ci_low",
                 "ci_high", "log10_mean"]


def history_rows(run_dir: str | Path) -> pd.DataFrame:
    """The history rows of an analysed run (columns in the module docstring). An analysis
    that is stale (an older analysis version, whose intervals were computed another way, or
    a run resumed since) is redone first with its own settings, as ``report`` does, so that
    one history never mixes two methods unmarked."""
    manifest = read_manifest(run_dir)
    analysis = load_analysis(run_dir)
    if is_stale(Path(run_dir), analysis.meta, manifest):
        settings = analysis.meta.get("settings")
        analysis = analyze_run(run_dir, settings=AnalysisSettings(**settings)
                               if isinstance(settings, dict) else AnalysisSettings())
    summary = analysis.summary
    env, config = manifest.environment, manifest.config
    # The measured code's repository (manifests before ``code`` measured gradprobe's own).
    code = manifest.code or manifest.git
    run = {"run_id": run_id(manifest), "run_date": manifest.started_at,
           "git_commit": code.get("commit"),
           "commit_date": code.get("commit_date"), "branch": code.get("branch"),
           "git_dirty": code.get("dirty"), "gradprobe_commit": manifest.git.get("commit"),
           "gradprobe_version": env.get("gradprobe"),
           "torch_version": env.get("torch"), "config_name": config.name,
           "config_sha256": config.sha256, "seeds": seed_summary(config.seeds),
           "residual_switched": residual_switch_applies(manifest)}
    keys = [*axis_columns(summary), "param", "layer", "kind", "metric"]
    rows = summary[keys + VALUE_COLUMNS].copy()
    cell = select(summary, headline_selection(manifest, summary)).index
    rows.insert(len(keys), "headline", rows.index.isin(cell)
                & (rows["metric"] == manifest.experiment.report.metric))
    for column in reversed(RUN_COLUMNS):
        rows.insert(0, column, run[column])
    return rows


def run_id(manifest: Manifest) -> str:
    """A run's id in the history: a hash of its config, seeds, start time (to the second),
    gradprobe's and the measured code's commits, and the run directory's name, which tells
    apart two runs of one config started in the same second."""
    config = manifest.config
    return short_hash({"config": config.sha256, "seeds": list(config.seeds),
                       "started_at": manifest.started_at, "commit": manifest.git.get("commit"),
                       "code": manifest.code.get("commit"), "run": manifest.path.parent.name})


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
    """Every run in the history in commit order (:func:`run_order`); UserError when there
    is none or a file is unreadable or from a newer gradprobe."""
    files = sorted(Path(root).glob("run-*.parquet"))
    if not files:
        raise UserError(f"{root}: no history yet; add analysed runs with "
                        "`gradprobe history add RUN_DIR`")
    frames = [migrate(*read_versioned_parquet(path, key=META_VERSION, current=HISTORY_VERSION,
                                              what="history",
                                              fix="remove it and add its run again"))
              for path in files]
    history = pd.concat(frames, ignore_index=True)
    return history.iloc[run_order(history)].reset_index(drop=True)


def migrate(table: pa.Table, version: int) -> pd.DataFrame:
    """A history file's rows in the current columns. Version 1 recorded gradprobe's own
    commit as ``git_commit`` and had no commit date or branch; versions 1 and 2 did not
    say whether ``residual`` switched skip connections: they keep the words they were
    shown with, plain and residual (as the report does for manifests from before factories
    recorded their parameters); add the run again for the "as built" words."""
    rows = table.to_pandas()
    if version < 2:
        rows.insert(rows.columns.get_loc("git_commit") + 1, "commit_date", None)
        rows.insert(rows.columns.get_loc("commit_date") + 1, "branch", None)
        rows.insert(rows.columns.get_loc("git_dirty") + 1, "gradprobe_commit",
                    rows["git_commit"])
        rows.insert(rows.columns.get_loc("metric") + 1, "headline", False)
    if version < 3:
        rows.insert(rows.columns.get_loc("seeds") + 1, "residual_switched", True)
    return rows


def run_order(history: pd.DataFrame) -> list[int]:
    """Row positions of ``history`` ordered by the measured commit's date (the run's start
    where there is none), then by the run's start: as asv orders its graphs."""
    started = pd.to_datetime(history["run_date"], utc=True, format="ISO8601")
    committed = pd.to_datetime(history["commit_date"], utc=True, format="ISO8601")
    key = pd.DataFrame({"commit": committed.fillna(started), "started": started,
                        "run_id": history["run_id"], "pos": range(len(history))})
    return key.sort_values(["commit", "started", "run_id"], kind="stable")["pos"].tolist()


@dataclass(frozen=True)
class Trend:
    """One series over runs: ``label`` names it by what varies among the selected series,
    ``key`` by every grouping column (``config_name``, the axes, ``param``, ``metric``),
    ``runs`` holds its history rows in commit order (columns as :func:`history_rows`),
    ``steps`` the detected change points (indices into ``runs``)."""

    label: str
    key: dict
    runs: pd.DataFrame
    steps: list[Step]


def input_side_weights(history: pd.DataFrame) -> tuple[str, ...]:
    """Per config, its input-side weight: the first parameter whose kind ends in ``weight``
    at the lowest layer index (``layers.0.weight`` for the MLP, ``blocks.0.norm1.weight``
    for the transformer preset); the default series of :func:`trends`."""
    weights = history[history["kind"].astype(str).str.endswith("weight")]
    first = weights.sort_values("layer", kind="stable").groupby("config_name")["param"].first()
    return tuple(dict.fromkeys(first))


def select_rows(history: pd.DataFrame, *, metrics=None, params=None,
                where: dict | None = None, config: str | None = None) -> pd.DataFrame:
    """The rows of the chosen metrics, parameters, config and axis values (None: all)."""
    rows = history
    if metrics is not None:
        rows = rows[rows["metric"].isin(metrics)]
    if params is not None:
        rows = rows[rows["param"].isin(params)]
    if config is not None:
        rows = rows[rows["config_name"] == config]
    for key, value in (where or {}).items():
        if key not in rows.columns:
            raise UserError(f"--where {key}: not an axis; use one of {', '.join(AXIS_COLUMNS)}")
        rows = rows[rows[key].astype(str).str.lower() == str(value).lower()]
    if rows.empty:
        raise UserError("no history rows match the selection (check --metric, --param, "
                        "--where and --config)")
    return rows


def series_order(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``rows`` with the headline cell's series first, the headline metric and the first
    layer within each cell first, then by config, axes, layer and metric."""
    first = rows.groupby(keys, dropna=False)["headline"].transform("any")
    cell_keys = [k for k in keys if k not in ("param", "metric", "residual")]
    cell_first = rows.groupby(cell_keys, dropna=False)["headline"].transform("any")
    metric_first = rows.groupby("metric")["headline"].transform("any")
    order = rows.assign(_cell=~cell_first, _series=~first, _metric=~metric_first)
    by = ["_cell", *cell_keys, "_metric", "metric", "layer", "param", "_series"]
    by += [k for k in keys if k not in by]
    return order.sort_values(by, kind="stable").drop(columns=["_cell", "_series", "_metric"])


def trends(history: pd.DataFrame, *, metrics=("grad_mean_abs",),
           params: tuple[str, ...] | None = None, where: dict | None = None,
           config: str | None = None, tolerance: float) -> list[Trend]:
    """Select series (config name, metrics, parameters, axis values) and detect steps; the
    headline cell's series first. ``params`` None selects each config's
    :func:`input_side_weights`."""
    params = input_side_weights(history) if params is None else params
    rows = select_rows(history, metrics=metrics, params=params, where=where, config=config)
    keys = ["config_name", *[c for c in AXIS_COLUMNS if c in rows], "param", "metric"]
    varying = [c for c in keys if rows[c].nunique() > 1] or ["param", "metric"]
    # Only what a trend shows, NaN levels dropped once: a site's history has thousands of
    # series, and copying every column for each costs most of the time.
    rows = rows[rows["log10_mean"].notna()]
    rows = rows[list(dict.fromkeys([*keys, *TREND_COLUMNS]))].astype(
        {c: object for c in ("run_id", "git_commit", "commit_date", "run_date")})
    out = []
    for values, part in series_order(rows, keys).groupby(keys, sort=False, dropna=False):
        named = dict(zip(keys, values, strict=True))
        part = part.reset_index(drop=True)
        label = " ".join(f"{k}={named[k]}" for k in varying)
        out.append(Trend(label, named, part, detect_steps(part["log10_mean"].to_numpy(),
                                                          tolerance=tolerance)))
    return out


def shown_text(items: list[Trend]) -> str:
    """What a list of series shows, in words: ``metric grad_mean_abs, parameter
    layers.0.weight, 12 series over 6 runs``."""
    def values(column: str) -> str:
        return ", ".join(dict.fromkeys(str(t.key[column]) for t in items))
    metrics, params = values("metric"), values("param")
    runs = len({r for t in items for r in t.runs["run_id"]})
    return (f"metric {metrics}, parameter {params}: {len(items)} series over {runs} runs "
            "in commit order")


def format_trends(items: list[Trend]) -> str:
    """Plain text: what is shown, then one block per series, one line per run, change
    points marked."""
    lines = [shown_text(items)]
    for trend in items:
        lines.append(f"{trend.label}: {len(trend.runs)} runs, "
                     f"{len(trend.steps) or 'no'} change point(s)")
        starts = {s.index: s for s in trend.steps}
        for i, run in trend.runs.iterrows():
            mark = f"  <- step x{starts[i].ratio:.4g}" if i in starts else ""
            date = str(run["commit_date"] or run["run_date"])[:10]
            lines.append(f"  {i:>3} {date}  {str(run['git_commit'])[:10]:<10} "
                         f"torch {run['torch_version']:<14} {run['geo_mean']:.4g} "
                         f"[{run['ci_low']:.4g}, {run['ci_high']:.4g}]{mark}")
    return "\n".join(lines)


def trends_json(items: list[Trend]) -> dict:
    """``history --json``: ``shown`` (:func:`shown_text`) and per series its ``key``,
    ``label``, ``runs`` (run id, commit, commit date, run date, geo mean and CI) and
    ``change_points`` (index, commits before and after, ratio)."""
    columns = ["run_id", "git_commit", "commit_date", "run_date", "geo_mean", "ci_low",
               "ci_high"]
    return {"shown": shown_text(items), "series": [{
        "key": t.key, "label": t.label,
        "runs": t.runs[columns].astype(object).where(t.runs[columns].notna(), None)
                .to_dict(orient="records"),
        "change_points": [{"index": s.index, "ratio": s.ratio,
                           "commit_before": t.runs["git_commit"][s.index - 1],
                           "commit_after": t.runs["git_commit"][s.index]}
                          for s in t.steps]} for t in items]}
