"""``--json`` output: one JSON object on stdout, strict enough for any parser.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which JSON does not allow and
``jq`` rejects; numpy scalars and paths are not serialisable at all. :func:`to_json` turns
non-finite floats into ``null``, numpy scalars into Python numbers and paths into strings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """``value`` with every nested item made JSON-safe (see module docstring)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def to_json(payload: dict[str, Any]) -> str:
    return json.dumps(plain(payload), indent=2, allow_nan=False)
