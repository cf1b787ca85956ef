"""Run a sweep into a run directory: cells, chunks of seeds, records, manifest.

Cells that share their initial state (same seeds, architecture and input; see
``bench.sweep.INIT_KEYS``) form a group: each chunk of seeds is drawn once and measured under
every cell of the group, so plain and residual cells see the very same weights. Every cell's
records are written atomically; cells whose file already exists are skipped, so re-running
into the same directory resumes an interrupted run.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.atomic_files import write_json_atomic, write_text_atomic
from bench.devices import require_devices
from bench.engine import DEFAULT_MAX_MEMORY, measure_group
from bench.errors import ConfigError, UserError
from bench.initialization import mlp_param_specs
from bench.manifest import MANIFEST_FILE, new_manifest, read_manifest, utc_now
from bench.records import cell_path, cell_table, write_cell
from bench.sweep import Cell, ExperimentConfig

Progress = Callable[[int, int], None]  # (seeds just finished, cells just finished)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    cells_run: int
    cells_skipped: int
    rows: int
    seconds: float


def slug(text: str, default: str = "run") -> str:
    """``text`` with only characters that are safe in file names everywhere."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or default


def default_run_dir(config: ExperimentConfig, root: Path = Path("reports")) -> Path:
    """``reports/<name>-<YYYYmmdd-HHMMSS>`` (suffixed when that already exists)."""
    base = root / f"{slug(config.name)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def group_cells(cells: list[Cell]) -> list[list[Cell]]:
    """Cells grouped by initial state, groups in order of first appearance."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.init_key, []).append(cell)
    return list(groups.values())


def prepare_run_dir(run_dir: Path, config: ExperimentConfig, force: bool) -> None:
    """Create the directory; refuse to mix records of two different configs."""
    if (run_dir / MANIFEST_FILE).exists():
        old = read_manifest(run_dir)["config"]
        if old.get("sha256") != _config_sha(config) and not force:
            raise UserError(f"{run_dir}: holds a run of another config ({old.get('source')}); "
                            "choose another --out, or pass --force to replace it")
        if force:
            shutil.rmtree(run_dir / "records", ignore_errors=True)
    try:
        (run_dir / "records").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{run_dir}: cannot create run directory ({err.strerror})") from None
    write_text_atomic(run_dir / "config.toml", config.text)


def _config_sha(config: ExperimentConfig) -> str:
    from bench.hashing import text_hash

    return text_hash(config.text)


def run_group(group: list[Cell], run_dir: Path, manifest: dict[str, Any], *,
              max_memory: int = DEFAULT_MAX_MEMORY, on_progress: Progress | None = None) -> int:
    """Measure a group of cells sharing initial state; write each cell. Returns rows written."""
    todo = [c for c in group if not cell_path(run_dir, c.cell_id).exists()]
    if not todo:
        return 0
    results = measure_group(todo, max_memory=max_memory,
                            on_chunk=(lambda n: on_progress(n, 0)) if on_progress else None)
    specs = mlp_param_specs(todo[0].model)
    rows = 0
    for cell in todo:
        result = results.pop(cell.cell_id)
        table = cell_table(cell, specs, result.seeds, result.values, result.loss,
                           result.fingerprints)
        write_cell(run_dir, cell, table, manifest)
        rows += table.num_rows
        if on_progress:
            on_progress(0, 1)
    return rows


def check_devices(config: ExperimentConfig) -> None:
    """Fail before anything is written if a requested device is not on this machine."""
    try:
        require_devices(tuple(dict.fromkeys(c.device for c in config.cells())))
    except ConfigError as err:
        err.source = err.source or config.source
        raise


def run_sweep(config: ExperimentConfig, *, out: Path | None = None, force: bool = False,
              max_memory: int = DEFAULT_MAX_MEMORY, progress: bool = True,
              overrides: dict[str, Any] | None = None) -> RunResult:
    """Run every cell of ``config`` into ``out`` (default :func:`default_run_dir`)."""
    cells = config.cells()
    check_devices(config)
    run_dir = Path(out) if out is not None else default_run_dir(config)
    prepare_run_dir(run_dir, config, force)
    manifest = new_manifest(config, cells, overrides or {})
    write_json_atomic(run_dir / MANIFEST_FILE, manifest)
    done = [c for c in cells if cell_path(run_dir, c.cell_id).exists()]
    started = time.perf_counter()
    bar = _progress_bar(cells, done, enabled=progress)
    rows = 0
    try:
        for group in group_cells(cells):
            rows += run_group(group, run_dir, manifest, max_memory=max_memory,
                              on_progress=bar.update_counts)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    manifest.update(finished_at=utc_now(), status="complete", wall_seconds=round(seconds, 3))
    write_json_atomic(run_dir / MANIFEST_FILE, manifest)
    return RunResult(run_dir, len(cells) - len(done), len(done), rows, seconds)


class _progress_bar:
    """tqdm over seeds, with cells done in the postfix (ETA from tqdm's rate)."""

    def __init__(self, cells: list[Cell], done: list[Cell], *, enabled: bool):
        from tqdm import tqdm

        self.cells_total = len(cells)
        self.cells_done = len(done)
        total = sum(len(c.seeds) for c in cells)
        initial = sum(len(c.seeds) for c in done)
        self.bar = tqdm(total=total, initial=initial, unit="seed", disable=not enabled,
                        dynamic_ncols=True, desc="sweep")
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"cells {self.cells_done}/{self.cells_total}", refresh=False)

    def update_counts(self, seeds: int, cells: int) -> None:
        self.cells_done += cells
        self._postfix()
        self.bar.update(seeds)

    def close(self) -> None:
        self.bar.close()
