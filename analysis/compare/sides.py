"""The two sides of a comparison: a run directory or a saved baseline, read the same way.

A baseline (:mod:`gradprobe.analysis.compare.baseline`) is a run directory's ``manifest.json``,
``config.toml``
and ``records/`` copied elsewhere, plus a ``baseline.json``; both kinds are read here into a
:class:`Side`, so ``gradprobe compare`` takes either on either side.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradprobe.analysis.compare.presence import check_stray_files
from gradprobe.bench.plan.sweep import ExperimentConfig
from gradprobe.bench.store.manifest import Manifest, read_manifest
from gradprobe.bench.store.records import read_records
from gradprobe.core.documents import read_versioned_json
from gradprobe.core.errors import UserError

BASELINE_FILE = "baseline.json"
BASELINE_VERSION = 1


@dataclass(frozen=True)
class Side:
    """One side of a comparison.

    ``records``: the records DataFrame of :mod:`gradprobe.bench.store.records` (one row per cell,
    seed and
    parameter); ``config``: the run's config as parsed from its manifest.
    """

    label: str  # "BASE" or "RUN", for messages
    path: str  # as the user gave it
    kind: str  # "run" or "baseline"
    manifest: Manifest
    config: ExperimentConfig
    records: pd.DataFrame

    @property
    def seeds(self) -> np.ndarray:
        """The seeds in the records, sorted ``(num_seeds,)`` int64."""
        return np.sort(self.records["seed"].unique()).astype(np.int64)

    def with_seeds(self, seeds) -> Side:
        """The same side restricted to ``seeds`` (A/A calibration splits one run in two)."""
        keep = self.records["seed"].isin(list(seeds))
        return replace(self, records=self.records[keep].reset_index(drop=True))

    def describe(self) -> dict[str, Any]:
        """What a reader needs to know about this side, JSON-ready."""
        env = self.manifest.environment
        git = env.get("git") or {}
        return {
            "label": self.label,
            "path": self.path,
            "kind": self.kind,
            "config": self.config.name,
            "config_sha256": self.manifest.config.sha256,
            "seeds": seed_summary(self.seeds),
            "n_seeds": len(self.seeds),
            "n_cells": int(self.records["cell_id"].nunique()),
            "torch": env.get("torch"),
            "gradprobe": env.get("gradprobe"),
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "started_at": self.manifest.started_at,
        }


def seed_summary(seeds) -> str:
    """``0..15`` for a contiguous range, else the first few seeds and the count."""
    seeds = sorted(int(s) for s in seeds)
    if not seeds:
        return "none"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    shown = ", ".join(map(str, seeds[:5]))
    return f"{shown}{', ...' if len(seeds) > 5 else ''} ({len(seeds)} seeds)"


def read_baseline_meta(path: str | Path) -> dict[str, Any] | None:
    """``baseline.json`` of a baseline directory, version-checked; None for a run directory."""
    meta_path = Path(path) / BASELINE_FILE
    if not meta_path.is_file():
        return None
    return read_versioned_json(meta_path, key="baseline_version", current=BASELINE_VERSION,
                               what="baseline", fix="save the baseline again with `gradprobe "
                               "baseline save RUN_DIR --name NAME --force`")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_baseline_files(path: Path, meta: dict[str, Any]) -> None:
    """UserError naming the first records file that is missing or differs from what
    ``baseline.json`` recorded (a truncated checkout, an edited or corrupted file)."""
    for relative, expected in meta.get("files", {}).items():
        file = path / relative
        if not file.is_file():
            raise UserError(f"{file}: missing from baseline {meta.get('name')!r}; restore it "
                            "(git checkout) or save the baseline again")
        if file_digest(file) != expected.get("sha256"):
            raise UserError(f"{file}: differs from the checksum in {BASELINE_FILE}; restore it "
                            "(git checkout) or save the baseline again")


def load_side(path: str | Path, label: str) -> Side:
    """Read a run or baseline directory; UserError (one line) for anything missing or
    corrupt, so ``gradprobe compare`` exits 2 without writing anything."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{label} {path}: no such run or baseline directory")
    meta = read_baseline_meta(path)
    if meta is not None:
        verify_baseline_files(path, meta)
    kind = "baseline" if meta is not None else "run"
    manifest = read_manifest(path)
    check_stray_files(path, manifest, meta)
    if manifest.status != "complete":
        raise UserError(f"{path}: the run is not complete (status {manifest.status!r}); "
                        f"finish it with `gradprobe run CONFIG --out {path}`")
    records = read_records(path)
    return Side(label, str(path), kind, manifest, manifest.experiment, records)
