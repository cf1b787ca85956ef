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


def add_executor_arguments(parser: argparse.ArgumentParser, work: str) -> None:
    """``--executor``, ``--workers`` and ``--scheduler``, the same for every verb that
    spreads ``work`` (e.g. "cells") over processes or a Dask cluster."""
    parser.add_argument("--executor", choices=("local", "processes", "dask"), default="local",
                        help=f"where the {work} run: local: this process (default); "
                        "processes: --workers N processes; dask: a Dask cluster "
                        "(--scheduler ADDRESS, or a LocalCluster)")
    parser.add_argument("--workers", type=int,
                        help="worker processes (default: one per core)")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. "
                        "tcp://10.0.0.5:8786 (--executor dask)")
