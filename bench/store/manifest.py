"""The run manifest: what ran, with which code, on which machine, when.

``<run>/manifest.json`` (also embedded in each records file) is a JSON object:

* ``manifest_version`` (int), ``records_schema_version`` (int)
* ``config``: ``name``, ``description``, ``source`` (path as given), ``text`` (verbatim),
  ``sha256`` (of the text), ``seeds`` (the seed list after CLI overrides), ``overrides``
* ``cells``: list of ``{"cell_id", "axes", "n_seeds"}`` in sweep order
* ``sweep_axes``: the record columns that vary across cells
* ``factories``: per ``[model]``/``[data] factory`` (or function passed from Python),
  ``module``, ``qualname``, ``file``, ``source_sha256``, ``from_python`` and ``parameters``
  (the signature's names, ``**`` for ``**kwargs``; absent before 0.2)
* ``environment``: see :func:`environment` (its ``git`` is gradprobe's own checkout)
* ``code``: the git state of the measured code (:func:`code_state`): ``commit``,
  ``commit_date`` (committer date, ISO 8601), ``branch`` (null when detached), ``dirty``
  (tracked files modified; untracked files such as ``reports/`` do not count) and
  ``source`` (``factory <spec>`` or ``working directory``); every value null outside git
* ``settings``: ``max_memory`` (bytes per chunk), ``tf32``, ``on_missing_device``,
  ``executor`` (its name, kept for older readers), ``cpu`` (the CPU policy at the start:
  :meth:`gradprobe.bench.engine.cpu_policy.CpuPolicy.manifest_entry`)
* ``executor``: ``name`` (``local``, ``processes`` or ``dask``), ``workers`` (worker
  processes used: ``--workers`` or one per core; null for ``local`` and for a remote Dask
  scheduler, whose cluster decides) and ``scheduler`` (``--scheduler`` address, or null)
* ``skipped``: ``{"device", "reason", "cells"}`` per absent device skipped by the config
* ``started_at``, ``finished_at`` (UTC ISO 8601, ``finished_at`` null while running),
  ``status`` (``running`` | ``complete`` | ``interrupted``; :func:`read_manifest` reports a
  ``running`` run whose lock no process holds as ``interrupted``), ``wall_seconds``
* ``timings``: per cell id, ``compute_seconds`` (forward, backward, reductions),
  ``init_seconds`` (its share of drawing initial states), ``n_seeds``, ``rows``,
  ``threads`` (MLP cells: torch intra-op threads used) and ``train_seconds`` for trained
  cells
* ``batching``: per factory cell, ``mode`` (``vmap`` or ``loop``), ``reason`` (why vmap was
  not used) and ``notes`` (e.g. operations vmap ran without a batching rule)
* ``peak_memory``: ``host_rss_bytes`` (peak RSS of the process) and ``devices`` (peak
  allocated bytes per CUDA device)
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradprobe.bench.models.callables import provenance
from gradprobe.bench.models.user_code import resolve_data_factory, resolve_factory
from gradprobe.bench.plan.loader import parse_config
from gradprobe.bench.plan.measures import RECORDS_SCHEMA_VERSION as SCHEMA_VERSION
from gradprobe.bench.store.run_lock import lock_is_held
from gradprobe.core.documents import read_versioned_json
from gradprobe.core.errors import UserError
from gradprobe.core.hashing import text_hash
from gradprobe.core.version import __version__

MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding bench/


def utc_now() -> str:
    """Now, UTC, ISO 8601 to the microsecond: runs started within one second must still
    order (a site's newest-first table, ``compare --previous``)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _git(root: Path, *args: str) -> str | None:
    """``git -C root args`` stdout stripped, or None when git or the repository is absent."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_state(root: Path = _SOURCE_ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the gradprobe source tree."""
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def repository_state(root: Path) -> dict[str, Any]:
    """Commit, committer date, branch (None when detached) and dirty flag of the git
    repository holding ``root``; every value None when it is in none."""
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "commit_date": None, "branch": None, "dirty": None}
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    # Untracked files are left out: the reports a run writes into the user's checkout
    # would otherwise mark every run dirty.
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "commit_date": _git(root, "log", "-1", "--format=%cI", commit),
            "branch": None if branch in (None, "HEAD") else branch,
            "dirty": bool(status) if status is not None else None}


def code_state(factories: Mapping[str, Mapping[str, Any]],
               cwd: Path | None = None) -> dict[str, Any]:
    """The git state of the measured code: the repository of the first factory (in spec
    order) whose source file is in one, else that of the working directory ``cwd``."""
    for spec, entry in sorted(factories.items()):
        file = entry.get("file")
        if file and Path(file).is_file():
            state = repository_state(Path(file).resolve().parent)
            if state["commit"]:
                return {**state, "source": f"factory {spec}"}
    return {**repository_state(cwd or Path.cwd()), "source": "working directory"}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def _installed_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Versions, hardware and numerics settings that can change the numbers."""
    import pyarrow as pa

    return {
        "gradprobe": __version__,
        "git": git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        # From the installed metadata: a sweep never needs scipy, and importing it (or
        # pandas, which pyarrow loads only when it writes) just for a version string costs
        # start-up time.
        "scipy": _installed_version("scipy"),
        "pandas": _installed_version("pandas"),
        "pyarrow": pa.__version__,
        "cuda": torch.version.cuda,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpus": gpu_names(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def factory_provenance(cells) -> dict[str, dict[str, Any]]:
    """Per ``[model] factory`` and ``[data] factory`` of the cells: where its code came
    from and the hash of its source (:func:`gradprobe.bench.models.callables.provenance`)."""
    models = {c.model.factory for c in cells if c.model.factory}
    data = {c.data.data_factory for c in cells if c.data.data_factory}
    found = {spec: provenance(spec, resolve_factory(spec)) for spec in sorted(models)}
    found.update({spec: provenance(spec, resolve_data_factory(spec)) for spec in sorted(data)})
    return found


def new_manifest(config, cells, overrides: dict[str, Any]) -> dict[str, Any]:
    """The manifest at the start of a run (``status = "running"``)."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "records_schema_version": SCHEMA_VERSION,
        "config": {
            "name": config.name,
            "description": config.description,
            "source": config.source,
            "text": config.text,
            "sha256": text_hash(config.text),
            "seeds": list(config.sweep.seeds),
            "overrides": overrides,
        },
        "cells": [{"cell_id": c.cell_id, "axes": c.axes(), "n_seeds": len(c.seeds)}
                  for c in cells],
        "sweep_axes": config.sweep_axes(),
        "factories": (factories := factory_provenance(cells)),
        "code": code_state(factories),
        "environment": environment(),
        "started_at": utc_now(),
        "finished_at": None,
        "status": "running",
        "wall_seconds": None,
    }


@dataclass(frozen=True)
class ConfigEntry:
    """The manifest's ``config``: the config as it ran (text verbatim, seeds after overrides)."""

    name: str
    description: str
    source: str
    text: str
    sha256: str
    seeds: tuple[int, ...]
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class CellEntry:
    """One planned cell: its content hash, its axis values and its seed count."""

    cell_id: str
    axes: Mapping[str, Any]
    n_seeds: int


@dataclass(frozen=True)
class Manifest:
    """``<run>/manifest.json``, loaded and checked once (see the module docstring).

    ``document`` is the JSON object as read, for code that rewrites the file (the runner on
    resume, ``baseline save``); everything else reads the typed fields. ``experiment`` is
    the config parsed from ``config.text``, once."""

    path: Path
    records_schema_version: int
    config: ConfigEntry
    cells: tuple[CellEntry, ...]
    sweep_axes: tuple[str, ...]
    environment: Mapping[str, Any]
    started_at: str
    finished_at: str | None
    status: str
    wall_seconds: float | None
    plan: str | None
    skipped: tuple[Mapping[str, Any], ...]
    settings: Mapping[str, Any]
    executor: Mapping[str, Any] | None
    timings: Mapping[str, Mapping[str, Any]]
    batching: Mapping[str, Mapping[str, Any]]
    peak_memory: Mapping[str, Any]
    factories: Mapping[str, Mapping[str, Any]]
    code: Mapping[str, Any]
    document: Mapping[str, Any] = field(repr=False)

    @cached_property
    def experiment(self):
        """The :class:`~gradprobe.bench.plan.sweep.ExperimentConfig` this run ran (a
        UserError naming this manifest if its config text no longer parses)."""
        try:
            return parse_config(self.config.text, source=self.config.source)
        except UserError as err:
            raise UserError(f"{self.path}: its config does not parse with this gradprobe "
                            f"({err})") from None

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def git(self) -> Mapping[str, Any]:
        """gradprobe's own checkout: ``commit`` and ``dirty``."""
        return self.environment.get("git") or {}

    @property
    def measured_commit(self) -> str | None:
        """The measured code's commit; gradprobe's for manifests written before ``code``."""
        return self.code.get("commit") if self.code else self.git.get("commit")

    @property
    def cell_ids(self) -> list[str]:
        return [c.cell_id for c in self.cells]

    @classmethod
    def from_document(cls, document: Mapping[str, Any], path: Path) -> Manifest:
        """Check the keys every reader relies on; a missing or mistyped one is a one-line
        :class:`UserError` naming the file and the key."""
        def need(table: Mapping[str, Any], key: str, kind: type | tuple, where: str = ""):
            value = table.get(key) if isinstance(table, Mapping) else None
            if not isinstance(value, kind):
                raise UserError(f"{path}: damaged manifest (key {where}{key} is missing or "
                                f"not a {getattr(kind, '__name__', 'valid value')}); restore "
                                "it, or re-run the sweep into a new directory")
            return value
        config = need(document, "config", dict)
        cells = need(document, "cells", list)
        entry = ConfigEntry(
            name=need(config, "name", str, "config."),
            description=config.get("description") or "",
            source=need(config, "source", str, "config."),
            text=need(config, "text", str, "config."),
            sha256=need(config, "sha256", str, "config."),
            seeds=tuple(need(config, "seeds", list, "config.")),
            overrides=config.get("overrides") or {})
        cell_entries = tuple(CellEntry(cell_id=need(c, "cell_id", str, "cells[]."),
                                       axes=need(c, "axes", dict, "cells[]."),
                                       n_seeds=need(c, "n_seeds", int, "cells[]."))
                             for c in cells)
        return cls(
            path=path, records_schema_version=need(document, "records_schema_version", int),
            config=entry, cells=cell_entries,
            sweep_axes=tuple(document.get("sweep_axes") or ()),
            environment=need(document, "environment", dict),
            started_at=need(document, "started_at", str),
            finished_at=document.get("finished_at"),
            status=need(document, "status", str),
            wall_seconds=document.get("wall_seconds"), plan=document.get("plan"),
            skipped=tuple(document.get("skipped") or ()),
            settings=document.get("settings") or {}, executor=document.get("executor"),
            timings=document.get("timings") or {}, batching=document.get("batching") or {},
            peak_memory=document.get("peak_memory") or {},
            factories=document.get("factories") or {},
            code=document.get("code") or {}, document=document)


def read_manifest(run_dir: str | Path) -> Manifest:
    """Load, version-check and validate ``<run>/manifest.json``."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: no {MANIFEST_FILE}; is this a gradprobe run directory?")
    document = read_versioned_json(path, key="manifest_version", current=MANIFEST_VERSION,
                                   what="manifest")
    if document.get("status") == "running" and not lock_is_held(Path(run_dir)):
        # The writer is gone without recording its end (SIGKILL, power loss, or a disk too
        # full to rewrite the manifest): the kernel released its lock, so it is not running.
        document = {**document, "status": "interrupted"}
    return Manifest.from_document(document, path)
