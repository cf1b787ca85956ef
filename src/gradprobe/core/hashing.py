"""Content hashes: stable across processes, machines and Python versions.

A cell's records file, a config and a fixed input are named by the SHA-256 of their canonical
JSON (sorted keys, no spaces), so the same content always gets the same name.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace; tuples become lists."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def short_hash(obj: Any, *, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def text_hash(text: str) -> str:
    """Full SHA-256 hex digest of a text (a config file as written)."""
    return hashlib.sha256(text.encode()).hexdigest()
