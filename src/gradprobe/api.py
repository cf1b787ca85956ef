"""The Python API: the same sweeps, analyses, reports and comparisons as the command line.

::

    import gradprobe

    run = gradprobe.run("smoke", seeds=8, out="reports/try")   # preset, path, TOML or Config
    records = run.records()                                      # one row per cell, seed, param
    analysis = run.analyze(n_resamples=999)                      # tables as DataFrames
    page = run.report()                                          # <run>/index.html
    result = gradprobe.compare("reports/baselines/smoke", run)
    assert result.passed, result.verdicts.query("verdict == 'regressed'")

A model of your own, defined anywhere (a notebook cell, a script's ``__main__``)::

    def mynet(*, width, depth, seed, **kwargs):
        return torch.nn.Sequential(...)

    run = gradprobe.run("smoke", model=mynet)

The command line is a thin layer over these functions; both raise
:class:`~gradprobe.core.errors.UserError` (one line, exit code 2 on the command line) for
bad input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradprobe.bench.execute.runner import RunResult, check_devices, default_run_dir, run_sweep
from gradprobe.bench.models.callables import register
from gradprobe.bench.plan.loader import config_with_overrides, load_config, parse_config
from gradprobe.bench.plan.sweep import ExperimentConfig
from gradprobe.bench.store.run_dir import RunDir
from gradprobe.core.errors import EXIT_OK, EXIT_REGRESSION, UserError

if TYPE_CHECKING:  # the analysis stack (scipy, matplotlib) loads when a method needs it
    import pandas as pd

    from gradprobe.analysis.analyze import Analysis
    from gradprobe.analysis.compare.comparison import Comparison as ComparisonDetail

Config = ExperimentConfig
ConfigLike = str | Path | ExperimentConfig
RunLike = str | Path | RunDir

__all__ = ["Comparison", "Config", "Run", "compare", "open_run", "run"]


@dataclass(frozen=True)
class Run(RunDir):
    """A run directory (:class:`~gradprobe.bench.store.run_dir.RunDir`: its layout, typed
    ``manifest``, ``config`` and ``records()``) with the analysis stage on top.

    ``result``: what :func:`run` did (cells run and skipped, rows, seconds); None for a run
    opened with :func:`open_run`. The analysis and plotting stacks are imported by the
    methods that need them, so running a sweep does not pay for them."""

    result: RunResult | None = field(default=None, compare=False)

    def analyze(self, *, executor: str = "local", workers: int | None = None,
                scheduler: str | None = None, **options: Any) -> Analysis:
        """Analyse the run (``<run>/analysis/``) and return its tables.

        ``options`` are :class:`~gradprobe.analysis.analyze.AnalysisSettings` fields:
        ``n_resamples``, ``confidence``, ``alpha``, ``seed``. ``executor`` (``local``,
        ``processes`` with ``workers``, ``dask`` with ``scheduler``) says where the
        per-cell work runs, as for :func:`run`; the tables are the same on every executor.
        Tables are DataFrames:
        ``summary``, ``effects``, ``trends``, ``contrasts``, ``devices``, ``cost`` and the
        ``train_*`` tables (columns in docs/records.md)."""
        from gradprobe.analysis.analyze import AnalysisSettings, analyze_run

        try:
            settings = AnalysisSettings(**options)
        except TypeError as err:
            raise UserError(f"Run.analyze: {err}; options are n_resamples, confidence, "
                            "alpha, seed, executor, workers, scheduler") from None
        return analyze_run(self.path, settings=settings, executor=executor, workers=workers,
                           scheduler=scheduler)

    def analysis(self) -> Analysis:
        """The tables of the last analysis (UserError when the run was never analysed)."""
        from gradprobe.analysis.analyze import load_analysis

        return load_analysis(self.path)

    def report(self, path: str | Path | None = None) -> Path:
        """Write the self-contained HTML report (default ``<run>/index.html``), analysing
        the run first when it has no current analysis; return its path."""
        from gradprobe.analysis.report.report_page import write_report

        return write_report(self.path, out=path)


@dataclass(frozen=True)
class Comparison:
    """The regression gate's answer, as ``gradprobe compare`` gives it.

    ``passed`` is True when nothing regressed (the command's exit code 0, else 1);
    ``verdicts`` has one row per test: the cell's axis columns, ``param``, ``metric``,
    ``ratio``, ``ci_low``, ``ci_high``, ``p_adj``, ``verdict`` (``regressed``,
    ``improved``, ``unchanged`` or ``inconclusive``) and ``reason``. ``detail`` is the full
    comparison (pairing, settings, environment differences); ``files`` what was written."""

    detail: ComparisonDetail
    files: tuple[Path, ...]

    @property
    def passed(self) -> bool:
        return not self.detail.regressed

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.detail.regressed else EXIT_OK

    @property
    def verdicts(self) -> pd.DataFrame:
        return self.detail.tests

    def counts(self) -> dict[str, int]:
        """Number of tests per verdict."""
        return self.detail.counts()

    def __str__(self) -> str:
        from gradprobe.analysis.compare.compare_output import gate_line

        return gate_line(self.detail)


def load(config: ConfigLike) -> ExperimentConfig:
    """A :class:`Config` from a preset name, a path, TOML text or a Config (returned as is).

    Text is taken as TOML when it names no file or preset and contains ``=``."""
    if isinstance(config, ExperimentConfig):
        return config
    if isinstance(config, Path):
        return load_config(config)
    if not isinstance(config, str):
        raise UserError(f"config must be a preset name, a path, TOML text or a "
                        f"gradprobe.Config, not {type(config).__name__}")
    looks_like_toml = "=" in config and not Path(config).exists()
    if not looks_like_toml:
        return load_config(config)
    return parse_config(config, source="<string>")


def with_callables(config: ExperimentConfig, *, model: Callable | None = None,
                   batch: Callable | None = None) -> ExperimentConfig:
    """``config`` with ``[model] factory`` set to the callable ``model`` and ``[data]
    factory`` to ``batch`` (registered in this process; the manifest records their
    qualified names and source hashes). The config text is edited too, since the manifest
    keeps the text and later stages re-read it."""
    text = config.text
    for section, function in (("model", model), ("data", batch)):
        if function is None:
            continue
        axis = "factory" if section == "model" else "data_factory"
        if axis in config.sweep_axes():
            raise UserError(f"{'model' if section == 'model' else 'batch'}=: this config "
                            f"sweeps [{section}] factory; remove that axis to use a function "
                            "passed from Python")
        spec = register(function, what="model" if section == "model" else "batch")
        text = set_config_key(text, section, "factory", spec)
    return parse_config(text, source=config.source)


def set_config_key(text: str, section: str, key: str, value: str) -> str:
    """TOML ``text`` with ``[section] key = "value"`` set (replaced, or added to the
    section, or in a new section at the end)."""
    line = f'{key} = "{value}"'
    header = re.search(rf"(?m)^\[{re.escape(section)}\][^\n]*\n", text)
    if header is None:
        return f"{text.rstrip()}\n\n[{section}]\n{line}\n"
    start = header.end()
    end = re.search(r"(?m)^\[", text[start:])
    stop = start + (end.start() if end else len(text) - start)
    body = text[start:stop]
    existing = re.compile(rf"(?m)^{re.escape(key)}\s*=.*$")
    body = existing.sub(lambda _: line, body) if existing.search(body) else f"{line}\n{body}"
    return text[:start] + body + text[stop:]


def run(config: ConfigLike, *, seeds: int | None = None, out: str | Path | None = None,
        model: Callable | None = None, batch: Callable | None = None,
        device: str | Sequence[str] | None = None,
        progress: bool = True, max_memory: int | None = None, force: bool = False,
        executor: str = "local", workers: int | None = None, scheduler: str | None = None,
        on_start: Callable[[Path, int, int], Any] | None = None) -> Run:
    """Run a sweep and return its :class:`Run`.

    ``config``: a preset name (``"smoke"``), a path, TOML text, or a :class:`Config`.
    ``seeds``: use seeds ``0..seeds-1``. ``out``: the run directory (default
    ``reports/<name>-<time>``; an existing one of the same plan is resumed). ``model``: a
    callable ``(width=, depth=, seed=, **kwargs) -> nn.Module`` used instead of
    ``[model] factory``. ``batch``: a callable ``(seed=, batch_size=, **kwargs)`` returning
    the model's inputs (a tensor, tuple or dict, or a
    :class:`~gradprobe.bench.models.batches.Batch` with targets), used instead of
    ``[data] factory``. ``device``: ``"cpu"``, ``"cuda"`` or several, instead of the
    config's. ``max_memory``: bytes per chunk of seeds. ``force``: redo every cell.
    ``executor``: ``local`` (default), ``processes`` (``workers``) or ``dask``
    (``scheduler``); a ``model`` callable lives in this process, so it needs ``local`` or
    ``processes`` (forked workers inherit it). ``on_start(run_dir, cells, cells_done)`` is
    called once every check has passed."""
    experiment = load(config)
    if model is not None or batch is not None:
        experiment = with_callables(experiment, model=model, batch=batch)
    devices = [device] if isinstance(device, str) else list(device) if device else None
    experiment = config_with_overrides(experiment, seeds=seeds, devices=devices)
    check_devices(experiment)
    overrides = {k: v for k, v in (("seeds", seeds), ("device", devices)) if v}
    run_dir = Path(out) if out is not None else default_run_dir(experiment)
    if (model is not None or batch is not None) and executor == "dask":
        raise UserError("model=/batch=: a callable passed from Python cannot reach Dask "
                        "workers; "
                        "use executor='local' or 'processes', or an importable "
                        "[model] factory")
    result = run_sweep(experiment, out=run_dir, progress=progress, overrides=overrides,
                       max_memory=max_memory, force=force, executor=executor,
                       workers=workers, scheduler=scheduler, on_start=on_start)
    return Run(run_dir, result=result)


def open_run(path: RunLike) -> Run:
    """The run in directory ``path`` (UserError when it holds no readable manifest)."""
    found = Run(path.path if isinstance(path, RunDir) else path)
    found.manifest  # noqa: B018 -- load and check it now, so a bad path fails here
    return found


def compare(base: RunLike, run: RunLike, *, alpha: float | None = None,
            tolerance: float | None = None, n_resamples: int | None = None, seed: int = 0,
            out: str | Path | None = None, write: bool = True) -> Comparison:
    """Compare ``run`` with ``base`` (run or baseline directories) as ``gradprobe compare``
    does, writing ``compare.json``/``compare.md`` into ``out`` or into ``run`` when it is a
    run directory (``write=False``: nothing). See :class:`Comparison` for the answer."""
    from gradprobe.analysis.compare.compare_output import compare_dirs

    paths = [p.path if isinstance(p, RunDir) else Path(p) for p in (base, run)]
    detail, written = compare_dirs(*paths, alpha=alpha, tolerance=tolerance,
                                   n_resamples=n_resamples, seed=seed, out=out, write=write)
    return Comparison(detail, tuple(written))
