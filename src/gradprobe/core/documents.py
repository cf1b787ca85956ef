"""Versioned documents: one way to read each kind of file another stage reads.

* JSON (manifest, analysis, baseline, comparison) carries an integer ``<kind>_version`` key.
* Parquet (records, training records, history) carries its version in the schema metadata.

A reader refuses a version newer than it knows (asv's rule: never guess at a future format)
and a file that is not such a document, each with a one-line error that says what to do;
older versions are returned with their number, for the caller's explicit migration.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gradprobe.core.errors import UserError


def read_versioned_json(path: str | Path, *, key: str, current: int, what: str,
                        fix: str = "") -> dict[str, Any]:
    """Load ``path`` and check its ``key`` (e.g. ``manifest_version``) against ``current``.

    ``what`` names the document in messages ("manifest"); ``fix`` is appended to the error
    for an unreadable file (how to regenerate it)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        hint = f"; {fix}" if fix else ""
        raise UserError(f"{path}: unreadable {what} ({err}){hint}") from None
    version = document.get(key) if isinstance(document, dict) else None
    if not isinstance(version, int):
        raise UserError(f"{path}: not a gradprobe {what} (no {key})")
    if version > current:
        raise UserError(f"{path}: {what} version {version} is newer than this gradprobe "
                        f"reads ({current}); upgrade gradprobe")
    return document


def parquet_version(path: str | Path, *, key: bytes, current: int, what: str,
                    fix: str) -> int:
    """The version stored under metadata ``key`` of a Parquet file, checked: a UserError
    when the file is unreadable (``fix`` says how to redo it), has no such key (not
    gradprobe's) or is newer than ``current``."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"{path}: not a readable Parquet file ({err}); {fix}") from None
    if key not in meta:
        raise UserError(f"{path}: Parquet file without {key.decode()} metadata; it was not "
                        f"written by gradprobe as a {what}")
    version = int(meta[key])
    if version > current:
        raise UserError(f"{path}: {what} version {version} is newer than this gradprobe "
                        f"reads ({current}); upgrade gradprobe")
    return version


def read_versioned_parquet(path: str | Path, *, key: bytes, current: int, what: str,
                           fix: str, columns: list[str] | None = None
                           ) -> tuple[pa.Table, int]:
    """``(table, version)`` of one versioned Parquet file. ``columns`` are read alone only
    from a file of the current version; an older one is read whole for its migration."""
    version = parquet_version(path, key=key, current=current, what=what, fix=fix)
    try:
        table = pq.read_table(path, columns=columns if version == current else None)
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"{path}: corrupt {what} file ({err}); {fix}") from None
    return table, version
