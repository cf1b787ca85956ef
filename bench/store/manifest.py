"""The run manifest: what ran, with which code, on which machine, when.

``<run>/manifest.json`` (also embedded in each records file) is a JSON object:

* ``manifest_version`` (int), ``records_schema_version`` (int)
* ``config``: ``name``, ``description``, ``source`` (path as given), ``text`` (verbatim),
  ``sha256`` (of the text), ``seeds`` (the seed list after CLI overrides), ``overrides``
* ``cells``: list of ``{"cell_id", "axes", "n_seeds"}`` in sweep order
* ``sweep_axes``: the record columns that vary across cells
* ``environment``: see :func:`environment`
* ``settings``: ``max_memory`` (bytes per chunk), ``tf32``, ``on_missing_device``,
  ``executor`` (its name, kept for older readers)
* ``executor``: ``name`` (``local``, ``processes`` or ``dask``), ``workers`` (worker
  processes used: ``--workers`` or one per core; null for ``local`` and for a remote Dask
  scheduler, whose cluster decides) and ``scheduler`` (``--scheduler`` address, or null)
* ``skipped``: ``{"device", "reason", "cells"}`` per absent device skipped by the config
* ``started_at``, ``finished_at`` (UTC ISO 8601, ``finished_at`` null while running),
  ``status`` (``running`` | ``complete`` | ``interrupted``; :func:`read_manifest` reports a
  ``running`` run whose lock no process holds as ``interrupted``), ``wall_seconds``
* ``timings``: per cell id, ``compute_seconds`` (forward, backward, reductions),
  ``init_seconds`` (its share of drawing initial states), ``n_seeds``, ``rows``, and
  ``train_seconds`` for trained cells
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradprobe.bench.store.run_lock import lock_is_held
from gradprobe.core.documents import read_versioned_json
from gradprobe.core.errors import UserError
from gradprobe.core.hashing import text_hash

MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_state(root: Path = _SOURCE_ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the gradprobe source tree."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


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


def environment() -> dict[str, Any]:
    """Versions, hardware and numerics settings that can change the numbers."""
    import pandas as pd
    import pyarrow as pa
    import scipy

    from bench import __version__

    return {
        "gradprobe": __version__,
        "git": git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
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


def new_manifest(config, cells, overrides: dict[str, Any]) -> dict[str, Any]:
    """The manifest at the start of a run (``status = "running"``)."""
    from gradprobe.bench.store.records import SCHEMA_VERSION

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
        "environment": environment(),
        "started_at": utc_now(),
        "finished_at": None,
        "status": "running",
        "wall_seconds": None,
    }


def read_manifest(run_dir: str | Path, *, complete: bool = False) -> dict[str, Any]:
    """Load and version-check ``<run>/manifest.json``: a ``config`` object and a ``cells``
    list always, and with ``complete`` (readers of the records: analyze, report) also
    :data:`REQUIRED_CONFIG_KEYS` and ``environment``."""
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: no {MANIFEST_FILE}; is this a gradprobe run directory?")
    manifest = read_versioned_json(path, key="manifest_version", current=MANIFEST_VERSION,
                                   what="manifest")
    check_manifest_keys(path, manifest, complete=complete)
    if manifest.get("status") == "running" and not lock_is_held(Path(run_dir)):
        # The writer is gone without recording its end (SIGKILL, power loss, or a disk too
        # full to rewrite the manifest): the kernel released its lock, so it is not running.
        manifest["status"] = "interrupted"
    return manifest


# What the readers of records index; every manifest gradprobe ever wrote has these.
REQUIRED_CONFIG_KEYS = ("text", "sha256", "seeds", "source")


def check_manifest_keys(path: Path, manifest: dict[str, Any], *, complete: bool) -> None:
    """One-line UserError for a manifest without the keys readers index (a hand-edited or
    truncated one), instead of a KeyError traceback deep in a reader."""
    config, cells = manifest.get("config"), manifest.get("cells")
    problem = None
    if not isinstance(config, dict):
        problem = "no config object"
    elif not isinstance(cells, list) or not all(
            isinstance(c, dict) and "cell_id" in c for c in cells):
        problem = "no cells list of {cell_id, ...} objects"
    elif complete and (missing := [k for k in REQUIRED_CONFIG_KEYS if k not in config]):
        problem = f"config lacks {', '.join(missing)}"
    elif complete and not isinstance(manifest.get("environment"), dict):
        problem = "no environment object"
    if problem:
        raise UserError(f"{path}: damaged manifest ({problem}); restore it, or re-run the "
                        "sweep into a new directory")
