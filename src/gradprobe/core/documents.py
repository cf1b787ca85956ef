"""Versioned JSON documents (manifest, analysis, baseline, comparison): one way to read them.

Every JSON file another stage reads carries an integer ``<kind>_version``. A reader refuses a
version newer than it knows (asv's rule: never guess at a future format) and a file that is
not such a document, each with a one-line error that says what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
