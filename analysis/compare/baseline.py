"""``gradprobe baseline save RUN_DIR --name NAME``: keep a run's records as a reference.

A baseline is ``reports/baselines/<name>/`` holding the run's ``manifest.json``,
``config.toml`` and ``records/`` (the raw records are what
:mod:`gradprobe.analysis.compare.comparison` needs, and
they are small: the smoke sweep's are about 100 KB), plus ``baseline.json``
(``baseline_version`` 1): ``name``, ``saved_at``, ``source`` (the run directory),
``config``, ``n_cells``, ``n_seeds``, ``torch``, ``git_commit`` and ``files``, the size and
SHA-256 of every records file, checked whenever the baseline is read.

The copy is assembled in a hidden directory next to the target and renamed into place, so a
reader sees the old baseline or the whole new one.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradprobe.analysis.compare.sides import (
    BASELINE_FILE,
    BASELINE_VERSION,
    file_digest,
    load_side,
    read_baseline_meta,
)
from gradprobe.bench.store.manifest import MANIFEST_FILE, utc_now
from gradprobe.bench.store.records import RECORDS_DIR, record_files
from gradprobe.core.atomic_files import write_json_atomic
from gradprobe.core.errors import UserError

BASELINES_DIR = Path("reports") / "baselines"
# fullmatch: with re.match, "$" also matches before a trailing newline ("smoke\n").
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class SavedBaseline:
    path: Path
    meta: dict[str, Any]

    @property
    def size(self) -> int:
        """Bytes on disk of every file in the baseline."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def save_baseline(run_dir: str | Path, *, name: str, root: str | Path = BASELINES_DIR,
                  force: bool = False) -> SavedBaseline:
    """Copy a complete run into ``root/name`` (module docstring); UserError if the run is
    incomplete or unreadable, the name is invalid, or the baseline exists without ``force``."""
    if not _NAME.fullmatch(name):
        raise UserError(f"--name {name!r}: use letters, digits, '_', '.' and '-' (at most 64), "
                        "starting with a letter or digit")
    run_dir, root = Path(run_dir), Path(root)
    side = load_side(run_dir, "RUN_DIR")  # refuses incomplete or corrupt runs
    target = root / name
    if target.exists() and not force:
        raise UserError(f"{target}: baseline {name!r} exists; pass --force to replace it")
    tmp = root / f".{name}.{os.getpid()}.tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / RECORDS_DIR).mkdir(parents=True)
        files = {}
        for path in record_files(run_dir):
            copy = tmp / RECORDS_DIR / path.name
            shutil.copyfile(path, copy)
            files[f"{RECORDS_DIR}/{path.name}"] = {"bytes": copy.stat().st_size,
                                                   "sha256": file_digest(copy)}
        shutil.copyfile(run_dir / MANIFEST_FILE, tmp / MANIFEST_FILE)
        (tmp / "config.toml").write_text(side.manifest.config.text, encoding="utf-8")
        meta = _meta(name, side, files)
        write_json_atomic(tmp / BASELINE_FILE, meta)
        _swap_in(tmp, target)
    except OSError as err:
        raise UserError(f"{target}: cannot write baseline ({err.strerror or err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SavedBaseline(target, meta)


def _meta(name: str, side, files: dict[str, Any]) -> dict[str, Any]:
    info = side.describe()
    return {"baseline_version": BASELINE_VERSION, "name": name, "saved_at": utc_now(),
            "source": str(side.path), "config": info["config"], "n_cells": info["n_cells"],
            "n_seeds": info["n_seeds"], "torch": info["torch"],
            "git_commit": info["git_commit"], "files": files}


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``; an existing ``target`` is moved aside first and
    removed only once the new one is in place."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def list_baselines(root: str | Path = BASELINES_DIR) -> list[dict[str, Any]]:
    """``baseline.json`` of every baseline under ``root``, with ``path`` and ``bytes``."""
    out = []
    for meta_path in sorted(Path(root).glob(f"*/{BASELINE_FILE}")):
        meta = read_baseline_meta(meta_path.parent) or {}
        size = sum(p.stat().st_size for p in meta_path.parent.rglob("*") if p.is_file())
        out.append({**meta, "path": str(meta_path.parent), "bytes": size})
    return out


def format_baselines(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no baselines (save one with `gradprobe baseline save RUN_DIR --name NAME`)"
    lines = []
    for r in rows:
        commit = (r.get("git_commit") or "unknown")[:10]
        lines.append(f"{r['name']:<16} {r.get('config')}: {r.get('n_cells')} cells x "
                     f"{r.get('n_seeds')} seeds, torch {r.get('torch')}, commit {commit}, "
                     f"saved {r.get('saved_at')}, {r['bytes'] / 1024:.0f} KiB  {r['path']}")
    return "\n".join(lines)


def describe_saved(saved: SavedBaseline) -> str:
    meta = saved.meta
    return (f"baseline {meta['name']!r}: {meta['n_cells']} cells x {meta['n_seeds']} seeds "
            f"from {meta['source']}, {len(meta['files'])} records files, "
            f"{saved.size / 1024:.0f} KiB -> {saved.path}")

