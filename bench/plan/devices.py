"""Device and dtype names as written in configs, and what this machine actually has.

``auto`` means "cpu, plus cuda when present". A device that is named but absent is a config
error: silently running fewer cells than asked would change the experiment.
"""

from __future__ import annotations

import re

import torch

from gradprobe.core.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

# fullmatch: with re.match, "$" also matches before a trailing newline ("cuda\n").
_DEVICE_PATTERN = re.compile(r"cpu|cuda|cuda:\d+|mps|auto")


def check_device_name(key: str, value: object) -> str:
    if not isinstance(value, str) or not _DEVICE_PATTERN.fullmatch(value):
        raise ConfigError(key, "must be cpu, cuda, cuda:N, mps or auto", value)
    return value


def check_dtype_name(key: str, value: object) -> str:
    if not isinstance(value, str) or value not in DTYPES:
        raise ConfigError(key, f"must be one of {', '.join(DTYPES)}", value)
    return value


def device_available(name: str) -> tuple[bool, str]:
    """Whether ``name`` can run here, and if not, why (for the error message)."""
    if name == "cpu":
        return True, ""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            return False, "torch.cuda.is_available() is False on this machine"
        index = int(name.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            return False, f"this machine has {count} CUDA device(s)"
        return True, ""
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return False, "torch.backends.mps.is_available() is False on this machine"
        return True, ""
    return False, "unknown device"


def expand_auto(requested: tuple[str, ...]) -> tuple[str, ...]:
    """Replace ``auto`` by cpu (+ cuda when present), keeping order and dropping repeats."""
    out: list[str] = []
    for name in requested:
        names = ["cpu", "cuda"] if name == "auto" and torch.cuda.is_available() else [name]
        if name == "auto" and not torch.cuda.is_available():
            names = ["cpu"]
        out.extend(n for n in names if n not in out)
    return tuple(out)
