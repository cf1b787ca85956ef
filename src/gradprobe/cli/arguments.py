"""argparse types shared by the verbs: a bad value is argparse's one-line usage error
(``error: gradprobe compare: argument --tolerance: ...``, exit 2), never a traceback or a value
that silently means something else."""

from __future__ import annotations

import argparse
import math


def ratio_above_one(text: str) -> float:
    """``--tolerance``: a finite ratio > 1 (``inf`` would call every change "unchanged",
    ``nan`` compares false with everything)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite ratio > 1 (1.05 means "
                                         "changes within 5%% count as none)")
    return value


def bootstrap_seed(text: str) -> int:
    """``--bootstrap-seed``: an integer >= 0, as ``numpy.random.default_rng`` requires."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value
